"""The shared demo fixture is up to date and its expected values are right.

Recomputes everything without make_fixture's helpers (plain loops, Pillow, numpy), so a bug in
the generator cannot hide behind itself.
"""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib

import numpy as np
import pytest

HERE = pathlib.Path(__file__).parent
FIXTURE = HERE / "fixture.json"


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_fixture", HERE / "make_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_fixture = _load_generator()


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


def test_rgb_nchw_matches_torch(fx):
    """The usual Python-side preprocessing (ToTensor + Normalize, in float32 torch) agrees."""
    pre = fx["manifest"]["preprocess"]
    if (pre["color"], pre["layout"], pre["scale"]) != ("RGB", "NCHW", 1 / 255):
        pytest.skip("fixture manifest is not RGB/NCHW/(1/255)")
    torch = pytest.importorskip("torch")
    x = torch.tensor(fx["image"]["pixels"], dtype=torch.uint8).permute(2, 0, 1).float() / 255
    x = (x - torch.tensor(pre["mean"]).view(-1, 1, 1)) / torch.tensor(pre["std"]).view(-1, 1, 1)
    np.testing.assert_allclose(x.reshape(-1).numpy(), fx["expected_input"], atol=1e-5)


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
    # Well-separated top-k probabilities, so float32 apps cannot legitimately rank them differently.
    gaps = [a - b for a, b in zip(top["probabilities"], top["probabilities"][1:])]
    assert min(gaps) > 1e-5, f"top-k probabilities too close for a float32 check: {top['probabilities']}"
