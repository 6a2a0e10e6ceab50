"""Markdown table of the model zoo for the README: sizes, parity and latency per entry.

    python scripts/zoo_table.py --out zoo.md                 # every entry
    python scripts/zoo_table.py digits text --runs 50 --threads 1

Sizes, parity and accuracy are each entry's committed baseline (model_zoo/<name>/expected.json, android).
Latency is measured here, in this process, on the .pte files in --build (an entry without them is built
first with `deploytool.zoo.run_entry`): eager PyTorch, the fp32 .pte and the int8 .pte through
`executorch.runtime`, the median of --runs calls after warm-up calls, on the first held-out sample, with
the same thread count for torch and XNNPACK. Not a test: numbers depend on the machine.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

WARMUP = 3  # first calls pay for allocation and XNNPACK weight packing


def median_ms(call, runs: int) -> float:
    for _ in range(WARMUP):
        call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure_entry(name: str, *, build: Path, runs: int, rebuild: bool) -> dict:
    """Latency of eager, fp32 .pte and int8 .pte; sizes and parity are the entry's expected.json baseline."""
    import json

    import torch
    from executorch.runtime import Runtime

    from deploytool import api
    from deploytool.zoo import entry, entry_config, expected_path, run_entry

    zoo_entry = entry(name)
    precisions = zoo_entry.recipe.precisions
    artifacts = {p: build / name / p / "android" / "model.pte" for p in precisions}
    if rebuild or not all(path.is_file() for path in artifacts.values()):
        run_entry(name, output=build / name, targets=("android",))
    prepared = api.prepare(entry_config(zoo_entry, zoo_entry.recipe, output=build / name / precisions[0]))
    _, sample = next(prepared.split.held_out.samples())
    inputs = tuple(torch.from_numpy(a.astype(spec.dtype)[None]) for a, spec in zip(sample, prepared.inputs))
    stored = json.loads(expected_path(name).read_text())["results"]["android"]
    row = {"name": name, "trained": zoo_entry.trained,
           "results": {p: {k: v["baseline"] for k, v in m.items()} for p, m in stored.items()}}
    with torch.inference_mode():
        row["eager_ms"] = median_ms(lambda: prepared.loaded.module(*inputs), runs)
    for precision, path in artifacts.items():
        method = Runtime.get().load_program(path).load_method("forward")
        row[f"{precision}_ms"] = median_ms(lambda: method.execute(inputs), runs)
    return row


def markdown(rows: list[dict], *, threads: int, runs: int) -> str:
    lines = [
        f"Measured with `python scripts/zoo_table.py` on {platform.machine()} ({platform.processor() or 'CPU'}), "
        f"{threads} thread(s) for torch and XNNPACK, median of {runs} runs after {WARMUP} warm-up runs, batch 1. "
        "Sizes and parity: the committed baselines (model_zoo/<name>/expected.json); parity is the int8 .pte vs "
        "eager fp32 on held-out real samples; the task metric (top-1 accuracy, crepe_tiny's pitch accuracy) only "
        "where the data has truths. Untrained entries (random init, BatchNorm re-estimated) show that a model "
        "exports and runs; their int8 parity proves nothing either way.",
        "",
        "| model | weights | fp32 .pte | int8 .pte | int8 SQNR | int8 top-1 agr. | task metric eager / int8 | eager "
        "| .pte fp32 | .pte int8 | int8 delegated |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        fp32, int8 = row["results"].get("fp32", {}), row["results"].get("int8", {})
        lines.append("| " + " | ".join([
            row["name"], "trained" if row["trained"] else "untrained", _kib(fp32.get("size_bytes")), _kib(int8.get("size_bytes")) if int8 else "fp32 only",
            f"{int8['sqnr_db']:.1f} dB" if int8.get("sqnr_db") is not None else "-",
            f"{int8['top1_agreement']:.3f}" if int8.get("top1_agreement") is not None else "-",
            _accuracy(row), f"{row['eager_ms']:.2f} ms", _ms(row.get("fp32_ms")), _ms(row.get("int8_ms")),
            f"{int8['delegated_share']:.0%}" if int8.get("delegated_share") is not None else "-",
        ]) + " |")
    return "\n".join(lines) + "\n"


def _accuracy(row: dict) -> str:
    fp32, int8 = row["results"].get("fp32", {}), row["results"].get("int8", {})
    if fp32.get("accuracy") is None:
        return "-"
    return f"{fp32['accuracy']:.1%} / {int8['accuracy']:.1%}" if int8.get("accuracy") is not None \
        else f"{fp32['accuracy']:.1%} / -"


def _kib(size: int | None) -> str:
    return "-" if size is None else f"{size / 1024:,.0f} KiB"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="entries (default: all)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per model and runtime")
    parser.add_argument("--threads", type=int, default=1, help="threads for torch and XNNPACK")
    parser.add_argument("--build", type=Path, default=Path("build/zoo"), help="zoo build folder (reused)")
    parser.add_argument("--out", type=Path, help="write the markdown here instead of stdout")
    parser.add_argument("--rebuild", action="store_true", help="re-run each entry even when its .pte files exist")
    args = parser.parse_args(argv)

    import torch
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    from deploytool.fsutil import atomic_write_text
    from deploytool.registry import zoo

    torch.set_num_threads(args.threads)
    _unsafe_reset_threadpool(args.threads)  # the pool XNNPACK runs on inside executorch.runtime
    names = args.names or zoo().names()
    rows = []
    for name in names:
        print(f"zoo_table: {name}", file=sys.stderr)
        rows.append(measure_entry(name, build=args.build, runs=args.runs, rebuild=args.rebuild))
    text = markdown(rows, threads=args.threads, runs=args.runs)
    if args.out:
        atomic_write_text(args.out, text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
