"""`deploytool bench`."""
from __future__ import annotations

import os
from pathlib import Path

import click

from deploytool.cli.check import config_for_artifacts
from deploytool.cli.options import command_with_examples, print_json, project_options
from deploytool.errors import UsageError


@command_with_examples("""  deploytool bench                               # every exported artifact, next to eager
  deploytool bench build/deploytool/android/model.pte --threads 1,2 --runs 100
  deploytool bench build/deploytool --json
""")("bench")
@click.argument("artifacts", nargs=-1, type=click.Path(path_type=Path))
@project_options
@click.option("--threads", default=None, help="Comma-separated thread counts, each set in the runtime itself "
                                              "[default: 1 and all cores].")
@click.option("--runs", type=click.IntRange(min=2), default=50, show_default=True, help="Timed runs per row.")
@click.option("--warmup", type=click.IntRange(min=1), default=5, show_default=True,
              help="Untimed runs first (the first one's time is reported separately).")
def bench(artifacts: tuple[Path, ...], threads: str | None, runs: int, warmup: int, **flags) -> None:
    """Latency (median, p10, p90), CPU time, load time, peak RSS and size of each artifact in its real runtime.

    ARTIFACTS are files or folders (default: everything exported into the output folder). Each artifact and
    thread count runs in its own child process on one held-out real sample at batch 1. The eager fp32
    model is always the first row; 'x eager' is each row's latency over eager's at the same thread count.
    Without --model or a config, the model is the one the artifacts' manifests record.
    """
    from deploytool.bench import bench as run_bench, table

    counts = parse_threads(threads)
    config = config_for_artifacts(flags, artifacts)
    rows = run_bench(config, artifacts, threads=counts, runs=runs, warmup=warmup)
    if flags["as_json"]:
        print_json([r.to_dict() for r in rows])
    else:
        click.echo(table(rows))


def parse_threads(value: str | None) -> tuple[int, ...]:
    """'1,2' -> (1, 2); default 1 and every core."""
    if not value:
        return tuple(sorted({1, os.cpu_count() or 1}))
    try:
        counts = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise UsageError(f"--threads {value!r} is not a list of positive thread counts.", hint="e.g. --threads 1,2")
    return counts
