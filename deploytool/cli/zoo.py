"""`deploytool zoo list|show|run`: registered models with expected results, re-checked as regression tests."""
from __future__ import annotations

from pathlib import Path

import click

from deploytool.cli.options import (arm64_option, arm64_profiles, command_with_examples, executor_options,
                                    make_executor, print_json, split_list)
from deploytool.config import Precision
from deploytool.errors import UsageError


@click.group("zoo", epilog="\b\nExamples:\n  deploytool zoo list\n  deploytool zoo show digits\n"
             "  deploytool zoo run digits --target android\n",
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def zoo() -> None:
    """Registered models, each with its data, quantization recipe and expected results."""


@command_with_examples("""  deploytool zoo list
  deploytool zoo list --json
""")("list")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON on stdout.")
def list_entries(as_json: bool) -> None:
    """Name, task, inputs and targets of every entry (imports no model code)."""
    from deploytool.registry import zoo as registry

    rows = [{"name": e.name, "task": e.meta["task"], "inputs": e.meta["inputs"], "targets": list(e.meta["targets"])}
            for e in registry().entries()]
    if as_json:
        print_json(rows)
        return
    table = [("name", "task", "inputs", "targets")] + [
        (r["name"], r["task"], r["inputs"], ",".join(r["targets"])) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        click.echo("  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip())


@command_with_examples("""  deploytool zoo show digits
  deploytool zoo show text --json
""")("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the entry and its expected results as JSON.")
def show(name: str, as_json: bool) -> None:
    """An entry's data, weights, recipe and expected results."""
    import dataclasses
    import json

    from deploytool.zoo import METRICS, entry, expected_path

    found = entry(name)
    path = expected_path(name)
    expected = json.loads(path.read_text()) if path.is_file() else {}
    if as_json:
        print_json({"name": found.name, "inputs": [dataclasses.asdict(i) for i in found.inputs],
                    "targets": list(found.targets), "data": found.data_note, "weights": found.weights_note,
                    "notes": list(found.notes), "recipe": dataclasses.asdict(found.recipe), "expected": expected})
        return
    recipe = found.recipe
    inputs = ", ".join(f"{i.name}: {'x'.join(map(str, i.shape))} {i.dtype}" for i in found.inputs)
    lines = [f"{found.name}", f"  inputs:   {inputs}", f"  targets:  {', '.join(found.targets)}",
             f"  data:     {found.data_note}", f"  weights:  {found.weights_note}"]
    lines += [f"  note:     {note}" for note in found.notes]
    if found.labels:
        shown = ", ".join(found.labels[:6]) + (", ..." if len(found.labels) > 6 else "")
        lines.append(f"  classes:  {len(found.labels)} ({shown})")
    lines += ["  recipe:", f"    precisions: {', '.join(recipe.precisions)}",
              f"    weights per-{'channel' if recipe.per_channel else 'tensor'}; calibration limit "
              f"{recipe.calib_limit or 'default'}; held out {recipe.holdout:.0%}",
              f"    kept in fp32: {', '.join(recipe.keep_fp32) or 'nothing'}"]
    if recipe.fp32_only:
        lines.append(f"    fp32 only: {recipe.fp32_only}")
    lines += [f"    known failure ({key}): {why}" for key, why in recipe.known_failures]
    if recipe.why:
        lines.append(f"    why: {recipe.why}")
    lines.append(f"  expected ({path}):" if expected else f"  expected: none yet ({path} is missing)")
    for target, by_precision in expected.get("results", {}).items():
        for precision, specs in by_precision.items():
            shown = []
            for metric_name, spec in specs.items():
                metric = METRICS[metric_name]
                sign = ">=" if metric.higher_is_better else "<="
                shown.append(f"{metric.label} {metric.show(spec['baseline'])} "
                             f"({sign} {metric.show(metric.limit(spec['baseline'], spec['tolerance']))})")
            lines.append(f"    {target} {precision}: " + "; ".join(shown))
    click.echo("\n".join(lines))


@command_with_examples("""  deploytool zoo run digits --target android
  deploytool zoo run --all
  deploytool zoo run --all --jobs 2                  # entry x target x precision jobs in 2 worker processes
  deploytool zoo run --all --executor ray            # as Ray tasks (after `ray start --head`, or on a cluster)
  deploytool zoo run resnet18 --weights resnet18-f37072fd.pth
  deploytool zoo run digits --calib-limit 1          # what a worse recipe does to the results
  deploytool zoo run text --update-baseline          # after a deliberate change
  deploytool zoo run mobilenet_v2 --target android --arm64   # the .pte on ARM's kernels too (qemu-user)
""")("run")
@click.argument("names", nargs=-1)
@click.option("--all", "run_all", is_flag=True, help="Run every entry.")
@click.option("--target", help="Comma-separated targets (default: the entry's, android and ios).")
@click.option("--precision", type=click.Choice([p.value for p in reversed(Precision)]),
              help="Only this precision (default: the recipe's, usually int8 and fp32).")
@click.option("--output", default="build/zoo", show_default=True, help="Folder for each entry's build.")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path),
              help="Weights replacing the entry's own (one entry only); results are then not compared "
                   "with the baseline.")
@click.option("--calib-limit", type=int, help="Override the recipe's calibration sample limit.")
@click.option("--update-baseline", is_flag=True, help="Write the measured results as the new expected.json.")
@arm64_option
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@executor_options
def run(names: tuple[str, ...], run_all: bool, target: str | None, precision: str | None, output: str,
        weights: Path | None, calib_limit: int | None, update_baseline: bool, arm64: str | None, as_json: bool,
        executor_name: str, jobs: int, ray_address: str | None) -> None:
    """Quantize and export entries, verify them in their runtime, and compare with expected.json.

    Exit code 1 when a metric regresses past its stored tolerance, an artifact crashes, or a parity
    check fails; each difference is printed with the expected value and the baseline.
    """
    from deploytool.registry import zoo as registry

    if run_all == bool(names):
        raise UsageError("Name the entries to run, or pass --all (not both).",
                         hint="`deploytool zoo list` shows the names.")
    names = tuple(registry().names()) if run_all else names
    for name in names:
        registry().get(name)  # typos fail before any heavy work
    if weights and len(names) > 1:
        raise UsageError("--weights fits one entry; name a single entry with it.")
    executor = make_executor(executor_name, jobs, ray_address)
    if executor is None:
        runs = [_run_one(name, target=target, precision=precision, output=Path(output), weights=weights,
                         calib_limit=calib_limit, update_baseline=update_baseline, arm64=arm64) for name in names]
    elif arm64 is not None:
        raise UsageError("--arm64 runs in this process only.", hint="Drop --executor/--jobs for the arm64 check.")
    elif update_baseline:
        raise UsageError("--update-baseline rewrites each expected.json from all its targets at once; it runs "
                         "in this process only.", hint="Drop --executor/--jobs for the baseline update.")
    else:
        runs = _run_matrix(names, executor, target=target, precision=precision, output=Path(output),
                           weights=weights, calib_limit=calib_limit)
    if as_json:
        print_json([{"name": r.entry.name, "weights": r.weights, "passed": r.passed, "results": r.results,
                     "findings": [f"{f.target} {f.precision}: {f.message}" for f in r.findings]} for r in runs])
    else:
        click.echo(_summary(runs, update_baseline=update_baseline))
    failed = [r for r in runs if not r.passed]
    if len(failed) == 1:
        from deploytool.zoo import raise_on_findings

        raise_on_findings(failed[0])
    if failed:
        from deploytool.zoo import ZooRegression

        raise ZooRegression(f"{len(failed)} of {len(runs)} zoo entries regressed: "
                            f"{', '.join(r.entry.name for r in failed)} (differences listed above).",
                            hint="Fix the cause, or after a deliberate change re-run those entries with "
                                 "--update-baseline.")


def _run_one(name: str, *, target: str | None, precision: str | None, output: Path, weights: Path | None,
             calib_limit: int | None, update_baseline: bool, arm64: str | None):
    from deploytool.zoo import run_entry

    click.echo(f"zoo: running {name}", err=True)
    return run_entry(name, output=output / name, targets=split_list(target),
                     precisions=(precision,) if precision else None, weights=weights.resolve() if weights else None,
                     calib_limit=calib_limit, update_baseline=update_baseline, arm64=arm64_profiles(arm64))


def _run_matrix(names: tuple[str, ...], executor, *, target: str | None, precision: str | None, output: Path,
                weights: Path | None, calib_limit: int | None):
    """Entry x target x precision as independent jobs on `executor`; the reports become one ZooRun per entry.

    Each job quantizes and lowers on its own (in <output>/<entry>/<target>), so the entry's targets share
    nothing and can run on different machines.
    """
    from deploytool.scale.jobs import JobSpec, ProgressLine
    from deploytool.zoo import Finding, ZooRun, entry, expected_path

    params = {"weights": str(weights.resolve()) if weights else None, "calib_limit": calib_limit}
    specs = []
    for name in names:
        found = entry(name)
        for each_target in split_list(target) or found.targets:
            for each_precision in (precision,) if precision else found.recipe.precisions:
                specs.append(JobSpec("zoo", name, target=each_target, recipe=each_precision,
                                     output=str(output.resolve() / name / each_target), params=params))
    runs: dict[str, ZooRun] = {}
    for report in executor.run(specs, on_done=ProgressLine(len(specs))):
        name = report["model"]
        run = runs.setdefault(name, ZooRun(entry(name), "", {}, [], expected_path(name), True))
        run.weights = report["details"].get("weights", run.weights)
        run.compared = report["details"].get("compared", run.compared)
        for key, by_precision in report["details"].get("results", {}).items():
            run.results.setdefault(key, {}).update(by_precision)
        run.findings += [Finding(report["target"], report["recipe"], message) for message in report["findings"]]
        if report["error"]:
            run.findings.append(Finding(report["target"], report["recipe"],
                                        f"the job failed: {report['error'].splitlines()[0]}"))
    return list(runs.values())


def _summary(runs, *, update_baseline: bool) -> str:
    """One line per entry, target and precision, then the differences."""
    from deploytool.zoo import METRICS

    header = ("model", "target", "precision", "SQNR", "top-1 agr", "accuracy", "size", "delegated", "verdict")
    rows, lines = [header], []
    for run in runs:
        failing = {(f.target, f.precision) for f in run.findings}
        for target, by_precision in run.results.items():
            for precision, m in by_precision.items():
                verdict = "FAIL" if (target, precision) in failing else "ok"
                rows.append((run.entry.name, target, precision,
                             _show(METRICS["sqnr_db"], m["sqnr_db"]), _show(METRICS["top1_agreement"],
                                                                           m["top1_agreement"]),
                             _show(METRICS["accuracy"], m["accuracy"]), _show(METRICS["size_bytes"], m["size_bytes"]),
                             f"{m['delegated_share']:.1%}" if m["delegated_share"] is not None else "-", verdict))
        if not run.compared and not update_baseline:
            lines.append(f"{run.entry.name}: weights differ from the baseline's ({run.weights}); metrics not "
                         "compared, only crashes and parity checks")
        if update_baseline:
            lines.append(f"{run.entry.name}: wrote the measured results to {run.expected_file}")
        lines.extend(f"{run.entry.name} {f.target} {f.precision}: {f.message}" for f in run.findings)
    from deploytool.report import columns

    return "\n".join([columns(rows)] + ([""] + lines if lines else []))


def _show(metric, value) -> str:
    return "-" if value is None else metric.show(value)


for _command in (list_entries, show, run):
    zoo.add_command(_command)
