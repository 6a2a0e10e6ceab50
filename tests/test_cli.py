"""CLI: help texts, a torch-free launcher, and one-screen errors for bad input."""
import json
import textwrap

import click
import pytest

from deploytool.cli import cli as root


def all_commands(group=root, prefix=()):
    for name, command in sorted(group.commands.items()):
        yield prefix + (name,)
        if isinstance(command, click.Group):
            yield from all_commands(command, prefix + (name,))


@pytest.mark.parametrize("path", [()] + list(all_commands()), ids=lambda p: " ".join(p) or "deploytool")
def test_every_command_has_help_with_examples(cli, path):
    result = cli(*path, "--help")
    assert "Usage:" in result.stdout
    assert "Examples:" in result.stdout


def test_unknown_target_suggests_the_close_one(cli):
    result = cli("export", "--model", "zoo:digits", "--target", "andriod", expect=2)
    assert "error: Unknown target 'andriod'. Did you mean 'android'? Known: android" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (cli.folder / "build").exists()


def test_missing_calibration_folder(cli):
    result = cli("quantize", "--model", "zoo:digits", "--calib", "nowhere/", expect=2)
    assert "Calibration data" in result.stderr and "nowhere" in result.stderr and "does not exist" in result.stderr
    assert "hint: Point --calib at" in result.stderr


def test_empty_calibration_folder(cli):
    (cli.folder / "empty").mkdir()
    result = cli("quantize", "--model", "zoo:digits", "--calib", "empty", expect=2)
    assert "holds no images" in result.stderr
    assert not (cli.folder / "build" / "deploytool" / "quantized").exists()


def test_no_calibration_data_never_falls_back_to_random(cli, tmp_path):
    (tmp_path / "m.py").write_text("from torch import nn\n\ndef build():\n    return nn.Linear(4, 2)\n")
    result = cli("quantize", "--model", "m.py:build", expect=2)
    assert "No calibration data given" in result.stderr and "--calib random" in result.stderr


def test_wrong_input_shape_names_the_field_and_file(cli, digit_images):
    (cli.folder / "deploytool.toml").write_text(
        f'model = "zoo:digits"\n[[inputs]]\nname = "x"\nshape = [1, 1, 28, 28]\n[data]\ncalib = "{digit_images}"\n')
    result = cli("quantize", expect=2)
    assert "input 'x' has shape [1, 8, 8], but its [[inputs]] shape expects [1, 28, 28]" in result.stderr
    assert 'hint: Fix shape in the [[inputs]] table with name = "x"' in result.stderr
    assert "digit_" in result.stderr  # names the sample file


def test_model_rejecting_the_data_shape(cli, digit_images):
    (cli.folder / "m.py").write_text("from torch import nn\n\ndef build():\n    return nn.Linear(5, 2)\n")
    result = cli("quantize", "--model", "m.py:build", "--calib", str(digit_images), expect=2)
    # No preprocessing configured: images get the ImageNet conventions, which this model does not take.
    assert "The model rejects the data's input shape" in result.stderr
    assert "[1, 3, 224, 224]" in result.stderr and "digit_0000.png" in result.stderr
    assert "hint: Make the data match the model: set resize and center_crop in [preprocess]" in result.stderr


def test_model_that_cannot_be_captured(cli, digit_images):
    (cli.folder / "m.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Branchy(nn.Module):
            def forward(self, x):
                if x.mean() > 0:
                    return x.flatten(1)
                return -x.flatten(1)

        def build():
            return Branchy()
    """))
    result = cli("export", "--model", "m.py:build", "--calib", str(digit_images), "--precision", "int8", expect=4)
    assert "cannot be captured with torch.export" in result.stderr
    assert "m.py:7" in result.stderr and "if x.mean() > 0" in result.stderr
    assert not list((cli.folder / "build").rglob("*.pte"))


def test_json_output_is_machine_readable(cli, digit_images):
    result = cli("quantize", "--model", "zoo:digits", "--calib", str(digit_images), "--calib-limit", "32", "--json")
    payload = json.loads(result.stdout)
    assert payload["calibration_samples"] == 32 and payload["parity_vs_eager"]["passed"]


def test_input_shape_flag_parses_to_inputs_tables_and_says_where_the_toml_form_is(cli):
    from deploytool.cli.options import parse_input_shapes

    assert parse_input_shapes(("1,3,160,160",)) == [{"name": "", "shape": [1, 3, 160, 160]}]
    assert parse_input_shapes(("ids:1,128", "mask:1x128")) == [{"name": "ids", "shape": [1, 128]},
                                                                 {"name": "mask", "shape": [1, 128]}]
    assert parse_input_shapes(()) is None
    assert parse_input_shapes(("input_ids:1,32:int64",)) == [{"name": "input_ids", "shape": [1, 32], "dtype": "int64"}]
    assert "unknown dtype 'int63'. Did you mean 'int64'?" in cli("quantize", "--model", "zoo:digits", "--input-shape",
                                                                  "ids:1,32:int63", expect=2).stderr
    assert "[[inputs]]" in cli("quantize", "--help").stdout and "--input-shape" in cli("export", "--help").stdout
    result = cli("quantize", "--model", "zoo:digits", "--input-shape", "1,three,8,8", expect=2)
    assert "--input-shape '1,three,8,8' is not a shape" in result.stderr and "[[inputs]]" in result.stderr


def test_input_shape_flag_sets_the_shape_and_the_log_says_what_was_assumed(photos, tmp_path, monkeypatch, caplog):
    import logging

    from deploytool import api
    from deploytool.cli.options import build_config

    (tmp_path / "model.py").write_text(textwrap.dedent("""
        import torch

        def build():
            return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                       torch.nn.Linear(4, 2))
    """))
    monkeypatch.chdir(tmp_path)
    flags = {"model": "model.py:build", "calib": str(photos)}
    with caplog.at_level(logging.INFO, logger="deploytool"):
        default = api.prepare(build_config(flags))
    assert default.inputs[0].shape == (1, 3, 224, 224)
    assumed = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("inputs:"))
    assert assumed.startswith("inputs: input 1x3x224x224 float32 (the preprocessing's crop, which every image is "
                              "resized to)")
    assert "resize 256, center crop 224x224, RGB" in assumed and "(default ImageNet conventions" in assumed
    assert "--input-shape" in assumed and "[preprocess] in deploytool.toml" in assumed
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="deploytool"):
        small = api.prepare(build_config({**flags, "input_shapes": ("1,3,40,40",)}))
    assert small.inputs[0].name == "input" and small.inputs[0].shape == (1, 3, 40, 40)
    assert tuple(small.example_inputs[0].shape) == (1, 3, 40, 40)
    assumed = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("inputs:"))
    assert "inputs: input 1x3x40x40 float32 (from --input-shape or [[inputs]] in the config)" in assumed
    assert "resize 46, center crop 40x40" in assumed
