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
