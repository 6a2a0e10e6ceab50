"""`deploytool check`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deploytool.cli.export import show_reports
from deploytool.cli.options import (FLAG_OF, arm64_option, arm64_profiles, build_config, command_with_examples,
                                    config_overrides, executor_options, make_executor, print_json, project_options,
                                    split_list)
from deploytool.config import ProjectConfig
from deploytool.errors import ParityFailed, UsageError


@command_with_examples("""  deploytool check
  deploytool check --target android --json
  deploytool check --native            # also run each .pte in the C++ runner (built on first use)
  deploytool check --arm64             # and on ARM's kernels: NEON, dot product, i8mm, under qemu-user
  deploytool check --arm64 cortex-a76,neoverse-n1
  deploytool check --junit deploytool-junit.xml   # every [[models]] entry x target; JUnit for CI
  deploytool check --update-baseline   # record the metrics in deploytool.baseline.json, then commit it
  deploytool check --executor ray      # each [[models]] entry as a Ray task (or --jobs N worker processes)
""")("check")
@project_options
@click.option("--target", "target", help="Comma-separated targets to check [default: the configured ones].")
@click.option("--native", is_flag=True, help="Also run each .pte in a C++ executorch::extension::Module runner "
                                            "(x86-64 XNNPACK; needs cmake and a C++ compiler) and compare it with "
                                            "eager and with the Python runtime.")
@arm64_option
@click.option("--name", "names", help="Only these models: comma-separated names of [[models]] entries.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write JUnit XML here: one test case per model x target x check.")
@click.option("--update-baseline", is_flag=True,
              help="Record this run's metrics in deploytool.baseline.json next to the config, for committing "
                   "(only when every parity check passes).")
@executor_options
def check(target: str | None, native: bool, arm64: str | None, names: str | None, junit: Path | None,
          update_baseline: bool, executor_name: str, jobs: int, ray_address: str | None, **flags) -> None:
    """Re-run parity on the exported artifacts: a CI gate.

    Loads each artifact named by <output>/<target>/manifest.json in its real runtime, runs the held-out
    real samples, and compares with the eager model. Exit code 0 when every check passes, 1 otherwise.
    Without --model or a config, the model is the one the manifests record (e.g. after `deploytool zoo run`).

    With named models ([[models]] entries, or a top-level `name`), each model x target is first exported when
    its model, data or options changed since the manifest was written. With deploytool.baseline.json next to
    the config, a metric worse than its baseline by more than its tolerance ([baseline]) fails too.
    """
    from deploytool import api, gate
    from deploytool.config import load_projects

    projects = load_projects(Path.cwd(), file=flags["config_file"], overrides=config_overrides(flags),
                             override_names=FLAG_OF)
    named = all(p.name for p in projects)
    executor = make_executor(executor_name, jobs, ray_address)
    if not named:  # one unnamed model: the recorded `quantize` run or the manifests fill in what flags leave out
        projects = [config_for_artifacts(flags)]
    if not (named or names or junit or update_baseline or executor or gate.baseline_path(projects).is_file()):
        show_reports(api.check(projects[0], targets=split_list(target), native=native,
                               arm64=arm64_profiles(arm64)), as_json=flags["as_json"])
        return
    if native or arm64:
        raise UsageError("--native and --arm64 cannot be combined with the model gate (named models, --name, "
                         "--junit, --update-baseline or a deploytool.baseline.json next to the config).",
                         hint="Run `deploytool check --native --config FILE` on its own, with a single-model config "
                              "in a folder without a baseline.")
    result = gate.run(projects, names=split_list(names), targets=split_list(target), export=named,
                      update_baseline=update_baseline, executor=executor)
    show_gate(result, as_json=flags["as_json"], junit=junit, update_baseline=update_baseline)


def config_for_artifacts(flags: dict[str, Any], paths: tuple[Path, ...] = ()) -> ProjectConfig:
    """build_config; when nothing names the model, the one recorded in the manifests of `paths` (artifact files
    or folders), else of the output folder, else of the one output folder under ./build. Says so on stderr.

    >>> config_for_artifacts({"model": None, "output": None, ...}).model   # after `deploytool zoo run digits`
    'zoo:digits'
    """
    from deploytool.manifests import SEARCH_ROOT, recorded_model, shown

    config = build_config(flags)
    if config.model:
        return config
    default_output = flags.get("output") is None and config.output == ProjectConfig.output
    folders = [p if p.is_dir() else p.parent for p in paths] or [config.output_dir]
    recorded = recorded_model(folders, search=Path(SEARCH_ROOT) if default_output and not paths else None)
    if recorded is None:
        return config  # `No model given.` follows, from the step that needs it
    weights = flags.get("weights") or recorded.weights
    click.echo(f"model from {shown(recorded.manifest)}: {recorded.model}"
               + (f" (weights {weights})" if weights else ""), err=True)
    output = flags.get("output") if paths else str(recorded.output_dir)  # benched files stay where they are
    return build_config({**flags, "model": recorded.model, "weights": weights, "output": output})


def show_gate(result, *, as_json: bool, junit: Path | None, update_baseline: bool) -> None:
    """One table (or JSON) on stdout, JUnit XML if asked; exit 1 when any model x target failed."""
    if as_json:
        print_json(result.to_dict())
    else:
        click.echo(result.table())
        click.echo(result.details())
    if junit is not None:
        from deploytool.gate.junit import write_junit

        click.echo(f"wrote {write_junit(result, junit)}", err=True)
    if result.baseline_written:
        click.echo(f"wrote {result.baseline_path}; commit it to make these metrics the baseline", err=True)
    failed = [c.id for c in result.cases if not c.passed]
    if failed:
        not_updated = "; deploytool.baseline.json was not updated" if update_baseline else ""
        raise ParityFailed(f"{len(failed)} of {len(result.cases)} model x target checks failed: "
                           f"{', '.join(failed)}{not_updated}.",
                           hint="See the checklists above. A deliberate change in a metric: "
                                "`deploytool check --update-baseline`, then commit deploytool.baseline.json.")
