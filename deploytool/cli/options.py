"""Options shared by the commands, and how flags become a ProjectConfig."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import click

from deploytool.config import ProjectConfig, load_config


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
        click.option("--output", help="Output folder [default: build/deploytool]."),
        click.option("--json", "as_json", is_flag=True, help="Print results as JSON on stdout."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def build_config(flags: dict[str, Any], **extra: Any) -> ProjectConfig:
    """Defaults < the last `quantize` run recorded in the output folder < config file < flags."""
    from deploytool.api import recorded_config

    overrides = {
        "model": flags.get("model"), "weights": flags.get("weights"), "trust_checkpoint": flags.get("trust_checkpoint"),
        "data.calib": flags.get("calib"), "data.calib_limit": flags.get("calib_limit"),
        "data.holdout": flags.get("holdout"), "output": flags.get("output"), **extra,
    }
    config = load_config(Path.cwd(), file=flags.get("config_file"), overrides=overrides)
    recorded = recorded_config(config.output_dir)
    if recorded:
        config = load_config(Path.cwd(), file=flags.get("config_file"), overrides=overrides, fallback=recorded)
    return config


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def split_list(value: str | None) -> tuple[str, ...] | None:
    """'android,ios' or repeated flags -> ('android', 'ios')."""
    if not value:
        return None
    return tuple(part.strip() for part in value.split(",") if part.strip())


def command_with_examples(examples: str):
    """click.command with an Examples epilog kept verbatim."""
    return functools.partial(click.command, epilog="\b\nExamples:\n" + examples,
                             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
