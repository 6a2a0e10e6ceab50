"""Generate tests/demos/fixture.json, the shared check for the demo apps' core logic.

The Kotlin core (android_demo/core) and the Swift core (ios_demo/DemoCore) read
this file and must reproduce `expected_input` (preprocessing) and
`expected_topk` (softmax + top-k) from `image`, `manifest` and `logits`.

The committed fixture comes from the fp32 zoo digits .pte (tests/demos/test_demo_model.py re-exports
it and checks the logits); regenerate it from the repository root with:

    deploytool export --model zoo:digits --target android --precision fp32 --output build/fixture
    python tests/demos/make_fixture.py --manifest build/fixture/android/manifest.json \
        --pte build/fixture/android/model.pte

Usage:
    python tests/demos/make_fixture.py                      # synthetic manifest + logits
    python tests/demos/make_fixture.py --manifest out/manifest.json --pte out/model.pte
        # real model: image sized to its input, logits = what model.pte returns for
        # expected_input, so expected_topk is the top-k of the real .pte

Pure numpy except --pte, which runs the .pte with executorch.runtime.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
from typing import Any

import numpy as np

FIXTURE = pathlib.Path(__file__).with_name("fixture.json")
SCHEMA = "deploytool.demo_fixture/1"
TOP_K = 5
SEED = 20240601

DEFAULT_MANIFEST: dict[str, Any] = {
    "schema": "deploytool.manifest/1",
    "model": "fixture:synthetic",
    "artifact": {"file": "model.pte", "format": "pte", "sha256": "0" * 64,
                 "precision": "fp32", "backend": "xnnpack"},
    "inputs": [{"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32"}],
    "outputs": [{"name": "output_0", "shape": [1, 10], "dtype": "float32"}],
    "preprocess": {"kind": "image", "resize": 8, "center_crop": [8, 8], "color": "RGB",
                   "scale": 1 / 255, "mean": [0.485, 0.456, 0.406],
                   "std": [0.229, 0.224, 0.225], "layout": "NCHW"},
    "labels": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
    "versions": {"deploytool": "0.1.0", "torch": "2.13.0", "executorch": "1.5.1"},
}

# Extra preprocessing variants checked on the same image (colour order, grayscale, NHWC, nulls).
EXTRA_PREPROCESS: list[tuple[str, dict[str, Any]]] = [
    ("bgr_nhwc", {"kind": "image", "resize": None, "center_crop": None, "color": "BGR",
                  "scale": 1 / 255, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3],
                  "layout": "NHWC"}),
    ("gray_nchw", {"kind": "image", "resize": None, "center_crop": None, "color": "L",
                   "scale": 1 / 255, "mean": [0.5], "std": [0.5], "layout": "NCHW"}),
    ("raw_rgb_nhwc", {"kind": "image", "resize": None, "center_crop": None, "color": "RGB",
                      "scale": 1.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
                      "layout": "NHWC"}),
]


def input_hw(manifest: dict[str, Any]) -> tuple[int, int]:
    shape = manifest["inputs"][0]["shape"]
    if manifest["preprocess"]["layout"] == "NHWC":
        return shape[1], shape[2]
    return shape[2], shape[3]


def make_image(height: int, width: int) -> np.ndarray:
    """Deterministic RGB uint8 image (H, W, 3) with the extremes 0 and 255 present."""
    rgb = np.random.default_rng(SEED).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    rgb[0, 0] = (0, 0, 0)
    rgb[-1, -1] = (255, 255, 255)
    rgb[0, -1] = (255, 0, 0)
    return rgb


def to_color(rgb: np.ndarray, color: str) -> np.ndarray:
    """RGB (H, W, 3) uint8 -> (H, W, C) float64 in the manifest's colour order."""
    if color == "RGB":
        return rgb.astype(np.float64)
    if color == "BGR":
        return rgb[..., ::-1].astype(np.float64)
    if color == "L":
        # Pillow's convert("L") integer formula (ITU-R 601-2), so apps match PIL-based export.
        r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
        return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)[..., None].astype(np.float64)
    raise ValueError(f"unknown color {color!r}")


def normalise(rgb: np.ndarray, pre: dict[str, Any]) -> np.ndarray:
    """(pixel * scale - mean[c]) / std[c], flattened in the manifest's layout."""
    x = to_color(rgb, pre["color"]) * pre["scale"]
    x = (x - np.asarray(pre["mean"], dtype=np.float64)) / np.asarray(pre["std"], dtype=np.float64)
    if pre["layout"] == "NCHW":
        x = x.transpose(2, 0, 1)
    elif pre["layout"] != "NHWC":
        raise ValueError(f"unknown layout {pre['layout']!r}")
    return x.reshape(-1)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()


def label_for(labels: list[str] | None, index: int) -> str:
    """Label text; falls back to the index when labels are missing (same rule in both apps)."""
    return labels[index] if labels and index < len(labels) else str(index)


def topk(probs: np.ndarray, k: int, labels: list[str] | None) -> dict[str, Any]:
    idx = np.argsort(-probs, kind="stable")[:k]  # ties: lower index first
    return {"k": int(len(idx)), "indices": [int(i) for i in idx],
            "labels": [label_for(labels, int(i)) for i in idx],
            "probabilities": [float(probs[i]) for i in idx]}


def synthetic_logits(n: int) -> list[float]:
    rng = np.random.default_rng(SEED + 1)
    return [round(float(v), 4) for v in rng.normal(0.0, 1.5, size=n)]


def run_pte(pte: pathlib.Path, flat_input: np.ndarray, shape: list[int]) -> list[float]:
    import torch
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(pte).load_method("forward")
    x = torch.tensor(flat_input, dtype=torch.float32).reshape(shape)
    return [float(v) for v in method.execute([x])[0].reshape(-1)]


def build(manifest: dict[str, Any] | None = None, logits: list[float] | None = None,
          logits_source: str = "synthetic") -> dict[str, Any]:
    manifest = copy.deepcopy(manifest or DEFAULT_MANIFEST)
    height, width = input_hw(manifest)
    rgb = make_image(height, width)
    if logits is None:
        logits = synthetic_logits(int(np.prod(manifest["outputs"][0]["shape"])))
    probs = softmax(np.asarray(logits, dtype=np.float64))
    cases = []
    for name, pre in EXTRA_PREPROCESS:
        channels = 1 if pre["color"] == "L" else 3
        shape = [1, height, width, channels] if pre["layout"] == "NHWC" else [1, channels, height, width]
        cases.append({"name": name, "preprocess": pre, "shape": shape,
                      "expected_input": normalise(rgb, pre).tolist()})
    return {
        "schema": SCHEMA,
        "about": "Generated by tests/demos/make_fixture.py; do not edit by hand.",
        "manifest": manifest,
        "image": {"height": height, "width": width, "color": "RGB", "pixels": rgb.tolist()},
        "expected_input": normalise(rgb, manifest["preprocess"]).tolist(),
        "cases": cases,
        "logits_source": logits_source,
        "logits": [float(v) for v in logits],
        "expected_probabilities": probs.tolist(),
        "expected_topk": topk(probs, TOP_K, manifest.get("labels")),
        "tolerance": {"input": 1e-5, "probability": 1e-5},
    }


def dumps(fixture: dict[str, Any]) -> str:
    """One top-level key per line: readable diffs without one number per line."""
    items = (f"  {json.dumps(k)}: {json.dumps(v, separators=(', ', ': '))}" for k, v in fixture.items())
    return "{\n" + ",\n".join(items) + "\n}\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=pathlib.Path, help="manifest.json of a real export")
    ap.add_argument("--pte", type=pathlib.Path, help="model.pte to compute logits with (needs --manifest)")
    ap.add_argument("--out", type=pathlib.Path, default=FIXTURE)
    args = ap.parse_args()
    manifest = json.loads(args.manifest.read_text()) if args.manifest else None
    fixture = build(manifest)
    if args.pte:
        if manifest is None:
            ap.error("--pte needs --manifest")
        shape = manifest["inputs"][0]["shape"]
        logits = run_pte(args.pte, np.asarray(fixture["expected_input"]), shape)
        fixture = build(manifest, logits, f"pte:{manifest['artifact'].get('sha256', '')}")
    args.out.write_text(dumps(fixture))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
