"""The shared demo fixture is up to date and its expected values are right.

Recomputes everything without make_fixture's helpers (plain loops, Pillow, numpy), so a bug in
the generator cannot hide behind itself.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import make_fixture  # this folder is on sys.path under pytest's default (prepend) import mode

FIXTURE = make_fixture.FIXTURE



@pytest.fixture(scope="module")
def fx() -> dict:
    return json.loads(FIXTURE.read_text())


def _assert_same(got, want, path="fixture"):
    """Equal structure; numbers equal up to float noise across numpy versions."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), path
        for k in want:
            _assert_same(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_same(g, w, f"{path}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15), path
    else:
        assert got == want, path


def test_committed_fixture_is_regenerated(fx):
    if fx["logits_source"] == "synthetic":
        regenerated = make_fixture.build()
    else:  # real .pte logits: keep them, recompute everything derived from them
        regenerated = make_fixture.build(fx["manifest"], fx["logits"], fx["logits_source"])
    # On failure regenerate with: python tests/demos/make_fixture.py
    _assert_same(json.loads(make_fixture.dumps(regenerated)), fx)


def test_manifest_follows_schema(fx):
    m = fx["manifest"]
    assert m["schema"] == "deploytool.manifest/1"
    assert {"schema", "model", "artifact", "inputs", "outputs", "preprocess", "labels", "versions"} <= m.keys()
    pre = m["preprocess"]
    assert {"kind", "resize", "center_crop", "color", "scale", "mean", "std", "layout"} <= pre.keys()
    n_classes = math.prod(m["outputs"][0]["shape"])
    assert len(fx["logits"]) == n_classes
    assert m["labels"] is None or len(m["labels"]) == n_classes


def _reference_input(pixels, pre) -> list[float]:
    """Straight from the spec, one value at a time, with Pillow for grayscale."""
    rgb = np.asarray(pixels, dtype=np.uint8)
    if pre["color"] == "L":
        from PIL import Image
        img = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))[..., None]
    elif pre["color"] == "BGR":
        img = rgb[..., ::-1]
    else:
        img = rgb
    h, w, c = img.shape
    value = lambda y, x, ch: (int(img[y, x, ch]) * pre["scale"] - pre["mean"][ch]) / pre["std"][ch]
    if pre["layout"] == "NCHW":
        return [value(y, x, ch) for ch in range(c) for y in range(h) for x in range(w)]
    return [value(y, x, ch) for y in range(h) for x in range(w) for ch in range(c)]


def test_expected_inputs_follow_the_spec(fx):
    pixels = fx["image"]["pixels"]
    shape = fx["manifest"]["inputs"][0]["shape"]
    assert len(fx["expected_input"]) == math.prod(shape)
    np.testing.assert_allclose(fx["expected_input"], _reference_input(pixels, fx["manifest"]["preprocess"]),
                               rtol=0, atol=1e-9)
    names = set()
    for case in fx["cases"]:
        names.add(case["preprocess"]["color"] + case["preprocess"]["layout"])
        assert len(case["expected_input"]) == math.prod(case["shape"])
        np.testing.assert_allclose(case["expected_input"], _reference_input(pixels, case["preprocess"]),
                                   rtol=0, atol=1e-9, err_msg=case["name"])
    assert {"BGRNHWC", "LNCHW"} <= names  # colour orders and layouts the apps must handle


def test_deploytool_preprocessing_agrees(fx, tmp_path):
    """deploytool's own image loading (what export calibrates and verifies on) gives the apps' inputs."""
    from PIL import Image

    from deploytool.config import Color, Layout, Preprocess
    from deploytool.data.images import load_image

    path = tmp_path / "image.png"
    Image.fromarray(np.asarray(fx["image"]["pixels"], dtype=np.uint8), "RGB").save(path)
    for name, pre, expected in [("manifest", fx["manifest"]["preprocess"], fx["expected_input"])] + \
            [(c["name"], c["preprocess"], c["expected_input"]) for c in fx["cases"]]:
        preprocess = Preprocess(resize=pre["resize"], center_crop=tuple(pre["center_crop"] or ()) or None,
                                color=Color(pre["color"]), scale=pre["scale"], mean=tuple(pre["mean"]),
                                std=tuple(pre["std"]), layout=Layout(pre["layout"]))
        np.testing.assert_allclose(load_image(path, preprocess).reshape(-1), expected, rtol=0, atol=1e-5,
                                   err_msg=name)


def test_softmax_and_topk(fx):
    logits = np.asarray(fx["logits"], dtype=np.float64)
    probs = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(fx["expected_probabilities"], probs, rtol=1e-12)
    assert sum(fx["expected_probabilities"]) == pytest.approx(1.0)

    top = fx["expected_topk"]
    assert top["k"] == len(top["indices"]) == len(top["labels"]) == len(top["probabilities"]) == 5
    assert top["indices"] == sorted(range(len(probs)), key=lambda i: (-probs[i], i))[:5]
    labels = fx["manifest"]["labels"]
    assert top["labels"] == [labels[i] if labels else str(i) for i in top["indices"]]
    np.testing.assert_allclose(top["probabilities"], probs[top["indices"]], rtol=1e-12)
    # Well-separated top-k logits (softmax is monotone, so they decide the ranking), so float32 apps cannot
    # legitimately rank them differently; a real model's tail probabilities are tiny, its logits are not.
    ranked = logits[top["indices"]]
    gaps = ranked[:-1] - ranked[1:]
    assert min(gaps) > 1e-3, f"top-k logits too close for a float32 check: {ranked.tolist()}"
