"""Options shared by the commands, and how flags become a ProjectConfig."""
from __future__ import annotations

import contextvars
import functools
import json
from pathlib import Path
from typing import Any

import click

from deploytool.config import ProjectConfig, load_config
from deploytool.scale.executor import EXECUTORS


def project_options(function):
    """--model, --calib and the rest: each overrides the same key of deploytool.toml."""
    options = [
        click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
                     help="Config file (default: ./deploytool.toml or [tool.deploytool] in ./pyproject.toml)."),
        click.option("--model", help="zoo:NAME, torchvision:NAME, pkg.module:factory, path/file.py:factory, or a "
                                     ".pt2 program. A file.py runs its code: use files you trust."),
        click.option("--weights", help="Local state_dict or checkpoint for the model (loaded with weights_only)."),
        click.option("--trust-checkpoint", is_flag=True, default=None,
                     help="Allow pickle in --weights (runs code from the file)."),
        click.option("--calib", help="Real samples: a folder of images, or .npy/.npz/.pt files. 'random' only if "
                                     "you accept an unverified result."),
        click.option("--calib-limit", type=int, help="Use at most this many calibration samples [default: 256]."),
        click.option("--holdout", type=float, help="Share of samples held out for parity, never calibrated on "
                                                    "[default: 0.2]."),
        click.option("--input-shape", "input_shapes", multiple=True, metavar="[NAME:]D,D,...[:DTYPE]",
                     help="The model's input shape, batch first, e.g. 1,3,160,160 (x:1,3,160,160 names the forward() "
                          "argument; input_ids:1,32:int64 sets the dtype, float32 by default; repeat for several "
                          "inputs). Replaces the [[inputs]] tables of deploytool.toml [default: from the zoo entry "
                          "or the first sample]."),
        click.option("--dynamic-dim", "dynamic_dims", multiple=True, metavar="INPUT:AXIS:MAX",
                     help="An axis whose length varies between samples, with its bound, e.g. input_ids:1:128 "
                          "(axis 1 of the model input, batch first; repeat for each). Every artifact then takes any "
                          "length up to MAX. Replaces [[dynamic_dims]] in deploytool.toml."),
        click.option("--output", help="Output folder [default: build/deploytool]."),
        click.option("--json", "as_json", is_flag=True, help="Print results as JSON on stdout."),
    ]
    return stack(options, function)


def parse_input_shapes(values: tuple[str, ...]) -> list[dict[str, Any]] | None:
    """--input-shape values as [[inputs]] tables; a blank name is filled from forward()'s arguments, in order.

    >>> parse_input_shapes(("x:1,3,160,160", "input_ids:1,32:int64"))
    [{'name': 'x', 'shape': [1, 3, 160, 160]}, {'name': 'input_ids', 'shape': [1, 32], 'dtype': 'int64'}]
    """
    from deploytool.config import DTYPES
    from deploytool.errors import UsageError, did_you_mean

    tables = []
    for value in values:
        parts = value.split(":")
        last = parts[-1]
        dtype = parts.pop() if len(parts) > 1 and "," not in last and not last.replace("x", "").isdigit() else None
        if dtype is not None and dtype not in DTYPES:
            raise UsageError(f"--input-shape {value!r}: unknown dtype '{dtype}'. {did_you_mean(dtype, DTYPES)}")
        name, dims = (":".join(parts[:-1]), parts[-1]) if parts else ("", "")
        try:
            shape = [int(d) for d in dims.replace("x", ",").split(",") if d.strip()]
        except ValueError:
            shape = []
        if not shape or min(shape) < 1:
            raise UsageError(f"--input-shape {value!r} is not a shape of positive sizes.",
                             hint="e.g. --input-shape 1,3,160,160, x:1,3,160,160 for the forward() argument x, or "
                                  "input_ids:1,32:int64 with a dtype; the TOML form is [[inputs]] with name, shape "
                                  "and dtype in deploytool.toml.")
        tables.append({"name": name.strip(), "shape": shape, **({"dtype": dtype} if dtype else {})})
    return tables or None


def parse_dynamic_dims(values: tuple[str, ...]) -> list[dict[str, Any]] | None:
    """--dynamic-dim values as [[dynamic_dims]] tables.

    >>> parse_dynamic_dims(("input_ids:1:128",))
    [{'input': 'input_ids', 'axis': 1, 'max': 128}]
    """
    from deploytool.errors import UsageError

    tables = []
    for value in values:
        name, _, rest = value.partition(":")
        axis, _, bound = rest.partition(":")
        if not (name and axis.isdigit() and bound.isdigit()):
            raise UsageError(f"--dynamic-dim {value!r} is not INPUT:AXIS:MAX.",
                             hint="e.g. --dynamic-dim input_ids:1:128 (axis 1 of input_ids, batch first, up to "
                                  "128); the TOML form is [[dynamic_dims]] with input, axis and max.")
        tables.append({"input": name, "axis": int(axis), "max": int(bound)})
    return tables or None


def build_config(flags: dict[str, Any], **extra: Any) -> ProjectConfig:
    """Defaults < the last `quantize` run recorded in the output folder < config file < flags."""
    from deploytool.api import recorded_config

    overrides = config_overrides(flags, **extra)
    config = load_config(Path.cwd(), file=flags.get("config_file"), overrides=overrides, override_names=FLAG_OF)
    recorded = recorded_config(config.output_dir)
    if recorded:
        config = load_config(Path.cwd(), file=flags.get("config_file"), overrides=overrides, override_names=FLAG_OF,
                             fallback=recorded)
    return config


# The project flags and the config keys they override; each flag's click parameter is its name without dashes.
PROJECT_FLAGS = {"--model": "model", "--weights": "weights", "--trust-checkpoint": "trust_checkpoint",
                 "--calib": "data.calib", "--calib-limit": "data.calib_limit", "--holdout": "data.holdout",
                 "--output": "output"}
FLAG_OF = {key: flag for flag, key in PROJECT_FLAGS.items()} | {"inputs": "--input-shape",
                                                                "dynamic_dims": "--dynamic-dim"}  # names bad values


def config_overrides(flags: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The project flags as dotted config keys; None means the flag was not given."""
    given = {key: flags.get(flag[2:].replace("-", "_")) for flag, key in PROJECT_FLAGS.items()}
    return {**given, "inputs": parse_input_shapes(flags.get("input_shapes") or ()),
            "dynamic_dims": parse_dynamic_dims(flags.get("dynamic_dims") or ()), **extra}


# With --json, stdout holds the JSON alone: deploytool.cli.main points sys.stdout at stderr while a command runs
# (a model's own print() lands there) and sets this to the stdout results go to.
RESULTS = contextvars.ContextVar("deploytool_results", default=None)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2), file=RESULTS.get())


def split_list(value: str | None) -> tuple[str, ...] | None:
    """'android,ios' or repeated flags -> ('android', 'ios')."""
    if not value:
        return None
    return tuple(part.strip() for part in value.split(",") if part.strip())


def stack(options: list, function):
    """Apply click options so that --help lists them in the order given."""
    for option in reversed(options):
        function = option(function)
    return function


def command_with_examples(examples: str):
    """click.command with an Examples epilog kept verbatim."""
    return functools.partial(click.command, epilog="\b\nExamples:\n" + examples,
                             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})


def executor_options(function):
    """--executor, --jobs, --ray-address: where the independent jobs of a matrix run (deploytool.scale.executor)."""
    options = [
        click.option("--executor", "executor_name", type=click.Choice(EXECUTORS), default="local",
                     show_default=True, help="Run the jobs here, or as Ray tasks (pip install 'deploytool[ray]')."),
        click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Local worker processes running jobs at once."),
        click.option("--ray-address", help="Ray cluster to join, e.g. auto or ray://head:10001 [default: RAY_ADDRESS, "
                                           "else the cluster `ray start` started here, else a new local instance]."),
    ]
    return stack(options, function)


def make_executor(executor_name: str, jobs: int, ray_address: str | None):
    """The executor the flags ask for; None for the plain in-process run (`--executor local --jobs 1`)."""
    from deploytool.scale.executor import executor_for

    executor = executor_for(executor_name, jobs=jobs, ray_address=ray_address)
    return None if executor_name == "local" and jobs == 1 else executor


ARM64_DEFAULT = "default"  # what a bare --arm64 stands for: the NEON, dot product and i8mm profiles


def arm64_option(function):
    """--arm64 [PROFILES]: also run each .pte in the arm64 ExecuTorch runtime under qemu-user."""
    return click.option(
        "--arm64", "arm64", is_flag=False, flag_value=ARM64_DEFAULT, default=None, metavar="[PROFILES]",
        help="Also run each .pte on ARM's kernels: the arm64 ExecuTorch runtime under qemu-user, once per CPU "
             "profile (default: cortex-a53 NEON, cortex-a76 dot product, an i8mm CPU), compared with eager and "
             "with the x86 run. `deploytool setup arm64` installs and lists the profiles.")(function)


def arm64_profiles(value: str | None) -> tuple[str, ...] | None:
    """The --arm64 value as api.export/check take it: None (not asked), () (the defaults) or profile names.

    >>> arm64_profiles("cortex-a53,cortex-a76"), arm64_profiles("default"), arm64_profiles(None)
    (('cortex-a53', 'cortex-a76'), (), None)
    """
    if value is None:
        return None
    return () if value == ARM64_DEFAULT else split_list(value) or ()
