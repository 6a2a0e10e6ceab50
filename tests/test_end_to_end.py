"""End to end on real data: quantize, export, run the .pte in the ExecuTorch runtime, check."""
import json
import re
import shutil
import textwrap

import pytest

from deploytool.fsutil import sha256_file


def test_digits_quantize_then_export_with_no_repeated_flags(cli, digit_images):
    quantized = cli("quantize", "--model", "zoo:digits", "--calib", str(digit_images), "--holdout", "0.5")
    # The log accounts for all 899 digits, and says which shape and preprocessing it assumed, and why.
    counts = re.search(r"\((\d+) to calibrate, (\d+) held out; (\d+) not used: data.calib_limit = 256\)",
                       quantized.stderr)
    assert counts and sum(map(int, counts.groups())) == 899 and counts.group(1) == "256"
    assert "inputs: x 1x1x8x8 float32 (from the zoo entry); preprocessing: no resize" in quantized.stderr
    result = cli("export", "--target", "android,ios")
    assert "PASS" in result.stdout
    assert "verifying android/model.pte" in result.stderr and "verifying ios/model.pte" in result.stderr
    held_out = re.search(r"top-1 accuracy on (\d+) held-out labelled samples", result.stdout)
    assert held_out and 400 < int(held_out.group(1)) < 500  # about half of the 899 digits
    for target in ("android", "ios"):
        folder = cli.folder / "build" / "deploytool" / target
        manifest = json.loads((folder / "manifest.json").read_text())
        report = json.loads((folder / "report.json").read_text())
        assert manifest["artifact"]["sha256"] == sha256_file(folder / "model.pte")
        assert manifest["inputs"] == [{"name": "x", "shape": [1, 1, 8, 8], "dtype": "float32"}]
        assert manifest["labels"] == [str(d) for d in range(10)]
        assert manifest["versions"]["executorch"] == "1.5.1"
        (artifact,) = report["artifacts"]
        assert artifact["precision"] == "int8" and artifact["passed"]
        assert artifact["delegation"]["share"] > 0.9
        vs_eager, vs_reference = artifact["parity"]["comparisons"]
        assert vs_eager["reference"] == "eager fp32" and vs_reference["reference"] == "quantized reference"
        assert vs_eager["outputs"][0]["sqnr_db"] > 25 and vs_eager["outputs"][0]["top1_agreement"] > 0.97
        accuracy = artifact["accuracy"]
        assert accuracy["labelled_samples"] == int(held_out.group(1))
        assert accuracy["eager_fp32"] > 0.95
        assert abs(accuracy["artifact"] - accuracy["eager_fp32"]) <= 0.01
    assert "PASS" in cli("check").stdout


def test_config_repo_needs_no_flags_and_reuses_the_quantized_program(cli, digit_images):
    shutil.copytree(digit_images, cli.folder / "data")
    (cli.folder / "deploytool.toml").write_text('model = "zoo:digits"\n[data]\ncalib_limit = 64\n')
    first = cli("quantize", "--calib", "data/")
    assert "(written)" in first.stdout
    assert "(reused (unchanged))" in cli("quantize", "--calib", "data/").stdout
    exported = cli("export", "--target", "android", "--json")
    assert json.loads(exported.stdout)[0]["precision"] == "int8"
    assert "reusing the quantized program" in exported.stderr
    # A changed option is a different program: never reuse a stale one.
    (cli.folder / "deploytool.toml").write_text('model = "zoo:digits"\n[data]\ncalib_limit = 32\n')
    assert "(written)" in cli("quantize", "--calib", "data/").stdout


def test_a_corrupt_image_among_good_ones_is_skipped_and_named(cli, digit_images):
    data = cli.folder / "data"
    shutil.copytree(digit_images, data)
    (data / "3" / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = cli("quantize", "--model", "zoo:digits", "--calib", "data", "--calib-limit", "2000")
    assert "skipping 3/zz_corrupt.png: not a readable image" in result.stderr
    assert "[FAIL]" not in result.stdout


def test_random_calibration_is_flagged_unverified(cli):
    (cli.folder / "deploytool.toml").write_text(
        'model = "zoo:digits"\n[[inputs]]\nname = "x"\nshape = [1, 1, 8, 8]\n')
    result = cli("export", "--calib", "random", "--precision", "fp32", expect=None)
    assert "unverified" in result.stdout.lower()
    report = json.loads((cli.folder / "build/deploytool/android/report.json").read_text())
    assert report["artifacts"][0]["parity"]["unverified"] is True


MODEL_PY = """
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from deploytool.batchnorm import reestimate_batchnorm
from deploytool.config import IMAGENET
from deploytool.data.images import image_folder
from deploytool.torchvision_compat import import_torchvision


def build():
    torch.manual_seed(0)
    model = import_torchvision().models.resnet18(weights=None)
    photos = image_folder(Path(__file__).parent / "photos", replace(IMAGENET, resize=182, center_crop=(160, 160)))
    images = torch.from_numpy(np.stack([arrays[0] for _, arrays in photos.samples()]))
    reestimate_batchnorm(model, images.split(16))
    return model.eval(), torch.zeros(1, 3, 160, 160)
"""


@pytest.mark.slow
def test_torchvision_classifier_on_real_photos_in_an_empty_folder(cli, photos):
    shutil.copytree(photos, cli.folder / "photos")
    (cli.folder / "model.py").write_text(textwrap.dedent(MODEL_PY))
    cli("quantize", "--model", "model.py:build", "--calib", "photos/")
    # A random classification head has near-tied logits, so top-1 may flip; parity is reported either way.
    cli("export", "--target", "android", expect=None)
    report = json.loads((cli.folder / "build/deploytool/android/report.json").read_text())
    (artifact,) = report["artifacts"]
    assert artifact["parity"]["run_error"] is None  # the ExecuTorch runtime loaded and ran it
    metrics = artifact["parity"]["comparisons"][0]["outputs"][0]
    assert metrics["sqnr_db"] > 15 and metrics["top1_agreement"] is not None
    assert artifact["delegation"]["share"] > 0.9
    assert (cli.folder / "build/deploytool/android/model.pte").stat().st_size > 5_000_000
