"""Benchmark the toolchain and its int8 artifacts on the trained MobileNetV2, next to the peer flows, and write
docs/benchmarks.md.

    .venv/bin/python benchmarks/run.py --work /tmp/bench                 # the whole run (~15 min on 2 cores)
    .venv/bin/python benchmarks/run.py --render docs/benchmarks.results.json  # the page again from its numbers
    .venv/bin/python benchmarks/run.py --pte-models resnet18,squeezenet1_1   # also int8 vs fp32 .pte of others

One run, every stage in its own fresh process (so each one's time and peak RSS are its own), all on the same
photos (`model_zoo.imagenet.write_photos`) and the same calibration / held-out split:
  * deploytool's default flow through its CLI: `quantize` then `export --target android` (two processes, as a
    user runs them), an unchanged `export` again, `quantize --no-search` for the search's cost, and the
    one-command path `export --calib` (quantize and export in one process);
  * the peer flows, each eager -> int8 artifact with stock APIs, then its artifact run in its own runtime on the
    held-out photos: the ExecuTorch reference (XNNPACKQuantizer static per-channel), XNNPACK dynamic int8,
    NNCF quantize_pt2e with fast bias correction, and onnxruntime quantize_static (QDQ, per-channel);
  * latency of eager and of every int8 artifact at batch 1 through `deploytool.bench`.
Every ratio on the page comes from numbers measured in this one run; the before column is the previous run's,
kept next to the page in docs/benchmarks.results.json. Not a test: nothing is asserted.
The child stages are in benchmarks/flows.py, the page in benchmarks/page.py.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from flows import HOLDOUT, MODEL, run_child
from page import ONE_PROCESS, markdown

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "benchmarks.results.json"
PEERS = ("et-reference", "et-dynamic", "nncf", "onnxruntime")
PTE_MODELS = ("squeezenet1_1", "resnet18", "mobilenet_v3_small", "shufflenet_v2_x1_0", "efficientnet_b0",
              "regnet_x_400mf")  # --pte-models: the zoo's other CNNs, int8 vs fp32 .pte (off by default: time)


def measure(args) -> dict:
    """Run every stage in child processes; the numbers behind the page (saved to <work>/results.json)."""
    from model_zoo.imagenet import write_photos

    load = os.getloadavg()
    meta = {"runs": args.runs, "load_start": load, "commit": _commit(), "versions": _versions(),
            "zoo": _zoo_weights(), "machine": _machine()}  # first: a failure here costs no measurement
    with tempfile.TemporaryDirectory(prefix="deploytool-benchmarks-") as scratch:
        work = (args.work or Path(scratch)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        write_photos(work / "photos")
        flags = ["--model", f"zoo:{MODEL}", "--calib", str(work / "photos"), "--holdout", str(HOLDOUT)]
        commands = {"quantize": ["quantize", *flags, "--output", str(work / "deploytool")],
                    "export": ["export", *flags, "--target", "android", "--output", str(work / "deploytool")],
                    "export again": ["export", *flags, "--target", "android", "--output", str(work / "deploytool")],
                    "quantize --no-search": ["quantize", *flags, "--no-search", "--output", str(work / "no-search")],
                    ONE_PROCESS: ["export", *flags, "--target", "android", "--output", str(work / "one-process")]}
        tool = {}
        for name, argv in commands.items():
            print(f"[deploytool] {name}", file=sys.stderr, flush=True)
            tool[name] = run_child("cli", json.dumps(argv), work)
        output = work / "deploytool"
        tool["report"] = json.loads((output / "android" / "report.json").read_text())
        tool["quantize.json"] = json.loads((output / "quantized" / "quantize.json").read_text())
        peers = {}
        for flow in PEERS:
            print(f"[peer] {flow}", file=sys.stderr, flush=True)
            try:
                peers[flow] = run_child("peer", flow, work)
            except RuntimeError as exc:  # e.g. a crash inside a peer library: the row says why
                peers[flow] = {"flow": flow, "error": str(exc).splitlines()[-1][:200]}
        paths = [str(output / "android" / "model.pte"), *(p["path"] for p in peers.values() if "path" in p)]
        print("[bench] eager and the int8 artifacts", file=sys.stderr, flush=True)
        bench = run_child("bench", json.dumps({"paths": paths, "threads": [1, 2], "runs": args.runs}), work)["rows"]
        pairs = {}
        for model in filter(None, args.pte_models.split(",")):
            print(f"[{model}] int8 and fp32 .pte", file=sys.stderr, flush=True)
            pairs[model] = run_child("pte-pair", model, work)
        meta["load_end"] = os.getloadavg()
        saved = {"meta": meta, "deploytool": tool, "peers": peers, "bench": bench, "pte_pairs": pairs,
                 "deploytool_pte": paths[0]}
        if args.work:  # the raw numbers, for anyone checking a ratio, and for --render
            (work / "results.json").write_text(json.dumps(saved, indent=1, default=str))
    return saved


def with_before(saved: dict, before: Path | None) -> dict:
    """The run's numbers with the page's previous run (its results, without their own `before`) beside them."""
    if before is None or not before.is_file():
        return saved
    previous = json.loads(before.read_text())
    previous.pop("before", None)
    return {**saved, "before": previous}


def _commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "deploytool"], cwd=ROOT, capture_output=True,
                           text=True)
    return head.stdout.strip() + (" (with uncommitted changes in deploytool/)" if dirty.stdout.strip() else "")


def _versions() -> dict:
    from deploytool.report import versions

    found = dict(versions())
    try:
        import nncf

        found["nncf"] = nncf.__version__
    except ImportError:
        pass
    return found


def _zoo_weights() -> dict[str, dict]:
    from deploytool.registry import zoo
    from deploytool.zoo import entry

    entries = {name: entry(name) for name in zoo().names()}
    return {name: {"trained": e.trained, "weights": e.weights_note} for name, e in entries.items()}


def _machine() -> str:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    return (f"{platform.machine()}, {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pte-models", default="",
                        help=f"also int8 vs fp32 .pte of these zoo names, e.g. {','.join(PTE_MODELS[:2])} [default: none]")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per latency row")
    parser.add_argument("--work", type=Path, help="folder for the outputs and results.json [default: a temporary one]")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                        help="write the page from the results.json of an earlier run (--work), measuring nothing")
    parser.add_argument("--before", type=Path, default=RESULTS,
                        help="the previous run's results, for the before column [default: the page's own, "
                             "docs/benchmarks.results.json]")
    parser.add_argument("--child", nargs=4, metavar=("STAGE", "ARG", "WORK", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        stage, arg, work, result = args.child
        from deploytool.bench import peak_rss_mb
        from flows import CHILDREN

        values = CHILDREN[stage](arg, Path(work))
        Path(result).write_text(json.dumps({**values, "peak_rss_mb": peak_rss_mb()}, default=str))
        return 0
    if args.render:
        saved = json.loads(args.render.read_text())
    else:
        saved = with_before(measure(args), args.before)
    text = markdown(saved)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if not args.render:  # the numbers behind the page, next to it: the next run's before, and --render's input
        args.out.with_suffix(".results.json").write_text(json.dumps(saved, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
