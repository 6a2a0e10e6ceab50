"""`export` with nothing changed since its last passing run answers from that run (deploytool.steps.unchanged);
any change to the data, an option, an artifact or the model's files runs it in full."""
from __future__ import annotations

import json
import shutil

UNCHANGED = "unchanged since"


def _export(cli, data, *extra, expect=0):
    return cli("export", "--model", "zoo:digits", "--calib", str(data), "--holdout", "0.3", "--target", "android",
               *extra, expect=expect)


def test_a_repeated_export_loads_nothing_and_reports_the_last_run(cli, digit_images):
    first = _export(cli, digit_images)
    assert UNCHANGED not in first.stdout and "loaded zoo:digits" in first.stderr
    again = _export(cli, digit_images)
    assert UNCHANGED in again.stdout and "loaded zoo:digits" not in again.stderr  # no model, no data, no runtime
    rows = [line for line in first.stdout.splitlines() if line.startswith("zoo:digits  android")]
    assert rows and all(row in again.stdout.splitlines() for row in rows), "the first run's table, row for row"
    report = json.loads((cli.folder / "build/deploytool/android/report.json").read_text())
    assert json.loads(_export(cli, digit_images, "--json").stdout) == report["artifacts"]


def test_a_changed_option_file_or_artifact_runs_the_export_again(cli, digit_images, tmp_path):
    data = shutil.copytree(digit_images, tmp_path / "digits")
    _export(cli, data)
    (cli.folder / "deploytool.toml").write_text("[parity]\ntimeout_s = 301.0\n")  # an option: a new stamp
    assert UNCHANGED not in _export(cli, data).stdout
    assert UNCHANGED in _export(cli, data).stdout

    images = sorted(data.rglob("*.png"))
    images[0].write_bytes(images[1].read_bytes())  # one calibration or held-out file changed
    assert UNCHANGED not in _export(cli, data).stdout

    pte = cli.folder / "build/deploytool/android/model.pte"
    pte.write_bytes(pte.read_bytes()[:-1])  # the artifact itself was touched
    rerun = _export(cli, data)
    assert UNCHANGED not in rerun.stdout and "PASS" in rerun.stdout


def test_a_failed_export_leaves_no_stamp(cli, digit_images):
    _export(cli, digit_images)
    stamp = cli.folder / "build/deploytool/.cache/export.json"
    assert stamp.is_file()
    # No lowering can gain 100 dB over its program: parity fails, and the export that passed is not vouched for.
    (cli.folder / "deploytool.toml").write_text("[parity]\nmax_lowering_loss_db = -100.0\n")
    _export(cli, digit_images, expect=1)
    assert not stamp.exists()
    assert UNCHANGED not in _export(cli, digit_images, expect=1).stdout


def test_a_model_from_a_python_file_always_runs_in_full(cli, digit_images):
    layers = "torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 10)"
    (cli.folder / "net.py").write_text(f"import torch\n\n\ndef build():\n    return torch.nn.Sequential({layers})\n")
    args = ("export", "--model", "net.py:build", "--calib", str(digit_images), "--target", "android",
            "--precision", "fp32")
    cli(*args)
    again = cli(*args)  # net.py may import code that changed: files cannot tell
    assert UNCHANGED not in again.stdout and "PASS" in again.stdout
