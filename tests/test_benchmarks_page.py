"""benchmarks/run.py --render: the page is written from saved numbers alone, and its targets are judged from them."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
MB = 2**20


def _stage(wall_s: float, rss_mb: float = 600.0, *, timings=None, artifacts=(), exit_code: int = 0) -> dict:
    return {"exit_code": exit_code, "timings": timings or {}, "artifacts": list(artifacts),
            "process": {"wall_s": wall_s, "cpu_s": wall_s, "peak_rss_mb": rss_mb}}


def _peer(flow_s: float, sqnr_db: float, path: str) -> dict:
    quality = {"sqnr_db": sqnr_db, "top1_agreement": 0.7, "decisive_samples": 30, "decisive_agreement": 0.8,
               "samples": 40, "accuracy": 0.7, "eager_accuracy": 1.0}
    return {"flow_s": flow_s, "stages": {"import": {"wall_s": 1.0, "cpu_s": 1.0}}, "path": path,
            "size_bytes": 3 * MB, "quality": quality}


def _saved() -> dict:
    """One run's numbers, written by hand: a 20 s deploytool flow (10 + 10 s), onnxruntime 10 s, ExecuTorch 80 s."""
    pte = "/w/deploytool/android/model.pte"
    report = {"artifacts": [{"format": "pte", "size_bytes": int(3.5 * MB), "passed": True,
                             "accuracy": {"artifact": 0.95, "eager_fp32": 1.0},
                             "parity": {"comparisons": [{"samples": 40, "outputs": [
                                 {"sqnr_db": 24.0, "top1_agreement": 0.9, "decisive_samples": 30,
                                  "decisive_agreement": 0.9}]}]}}]}
    bench = [{"name": "eager (zoo:mobilenet_v2)", "format": "eager", "threads": 1, "median_ms": 10.0,
              "size_bytes": 14 * MB, "error": None},
             {"name": pte, "format": "pte", "threads": 1, "median_ms": 3.0, "size_bytes": int(3.5 * MB), "error": None}]
    return {
        "meta": {"runs": 30, "load_start": [0.1, 0.1, 0.1], "load_end": [0.1, 0.1, 0.1], "commit": "abc1234",
                 "versions": {"torch": "2.13.0"}, "machine": "x86_64",
                 "zoo": {"digits": {"trained": True, "weights": "trained in the repo"},
                         "resnet18": {"trained": False, "weights": "torchvision default init"}}},
        "deploytool": {"quantize": _stage(10.0, timings={"load": 2.0, "capture": 1.0, "quantize": 5.0}),
                       "export": _stage(10.0, 700.0, timings={"load": 2.0},
                                        artifacts=[{"format": "pte", "timings": {"build": 6.0, "verify": 1.0}}]),
                       "export again": _stage(2.0), "quantize --no-search": _stage(5.0),
                       "report": report,
                       "quantize.json": {"recipe": {"activations": "dynamic", "search": {"steps": [
                           {"name": "static int8", "sqnr_db": 12.0, "met": False},
                           {"name": "dynamic int8", "sqnr_db": 24.0, "met": True}]}}}},
        "peers": {"et-reference": _peer(80.0, 10.0, "/w/peers/et-reference/model.pte"),
                  "onnxruntime": _peer(10.0, 11.0, "/w/peers/onnxruntime/model.int8.onnx"),
                  "nncf": {"flow": "nncf", "error": "ImportError: no nncf here"}},
        "bench": bench, "pte_pairs": {}, "deploytool_pte": pte}


def test_render_judges_targets_from_saved_numbers(tmp_path):
    results, page = tmp_path / "results.json", tmp_path / "benchmarks.md"
    saved, before = _saved(), _saved()  # the previous run: two commands only, 20 s
    saved["deploytool"]["export --calib (one process)"] = _stage(15.0)
    before["meta"]["commit"] = "0ld0ld0"
    results.write_text(json.dumps({**saved, "before": before}))
    subprocess.run([sys.executable, str(BENCHMARKS / "run.py"), "--render", str(results), "--out", str(page)],
                   check=True, stdout=subprocess.DEVNULL)
    text = page.read_text()
    targets = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    # The flow is its faster form, the one-process path (15 s); the before column is the previous run's.
    onnxruntime = targets["eager -> verified int8 .pte / onnxruntime flow"]
    assert "1.50x (20.0 s as two commands, 15.0 s as one" in onnxruntime and onnxruntime.endswith("| met | 2.00x |")
    assert "0.19x (vs 80.0 s)" in targets["eager -> verified int8 .pte / ExecuTorch reference flow"]
    assert "before (commit 0ld0ld0)" in text
    assert "0.20x" in targets["repeated `export`, nothing changed / first `export`"]
    assert "+13.0 dB (best static peer 11.0 dB)" in targets["int8 .pte vs the best static peer flow"]
    assert "0.30x" in targets["int8 .pte latency / eager, 1 thread"]
    assert "0.25x (3.50 MB) | <= 0.35x | met |" in targets["int8 .pte size / eager fp32"]
    assert "24.0 dB | >= 20 dB | met |" in targets["int8 .pte SQNR vs eager"]
    assert "could not run: ImportError: no nncf here" in text
    assert "- not trained: resnet18" in text
