"""A real model in the demo apps: `export --into`, and the fixture's logits from the zoo digits .pte.

The committed fixture.json was generated from the fp32 zoo digits .pte (see make_fixture.py); here the
same .pte is exported again, copied into a copy of android_demo with --into, and run in the
ExecuTorch runtime on the fixture's expected_input: its logits and top-k must be the fixture's.
"""
from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest

import make_fixture  # this folder is on sys.path under pytest's default (prepend) import mode

ROOT = pathlib.Path(__file__).resolve().parents[2]
LOGITS_ATOL = 1e-4  # fp32 XNNPACK across machines: same program, summation order may differ slightly



@pytest.fixture(scope="module")
def android_demo(tmp_path_factory) -> pathlib.Path:
    """A copy of the demo app with the fp32 zoo digits model put in by `export --into`."""
    from cli_runner import Cli

    folder = tmp_path_factory.mktemp("demo")
    demo = shutil.copytree(ROOT / "android_demo", folder / "android_demo")
    Cli(folder)("export", "--model", "zoo:digits", "--target", "android", "--precision", "fp32",
                "--into", "android_demo")
    return demo


@pytest.mark.slow
def test_into_copies_the_model_and_manifest(android_demo):
    exported = android_demo.parent / "build" / "deploytool" / "android"
    assets = android_demo / "app" / "src" / "main" / "assets"
    for name in ("model.pte", "manifest.json"):
        assert (assets / name).read_bytes() == (exported / name).read_bytes()
    assert not list(assets.glob(".*.tmp"))  # atomic writes leave no temp files
    assert (assets / "sample.png").is_file()  # the app's own asset is untouched


@pytest.mark.slow
def test_fixture_logits_come_from_the_digits_pte(android_demo):
    fixture = json.loads(make_fixture.FIXTURE.read_text())
    assets = android_demo / "app" / "src" / "main" / "assets"
    manifest = json.loads((assets / "manifest.json").read_text())
    assert fixture["manifest"]["model"] == manifest["model"] == "zoo:digits"
    for key in ("inputs", "outputs", "preprocess", "labels"):
        assert fixture["manifest"][key] == manifest[key], key
    shape = manifest["inputs"][0]["shape"]
    logits = make_fixture.run_pte(assets / "model.pte", np.asarray(fixture["expected_input"]), shape)
    np.testing.assert_allclose(logits, fixture["logits"], rtol=0, atol=LOGITS_ATOL)
    top = make_fixture.topk(make_fixture.softmax(np.asarray(logits)), make_fixture.TOP_K, manifest["labels"])
    assert top["indices"] == fixture["expected_topk"]["indices"]


def test_into_refuses_a_folder_that_is_not_the_demo_app(cli, tmp_path):
    (tmp_path / "not_an_app").mkdir()
    result = cli("export", "--model", "zoo:digits", "--target", "android", "--into", "not_an_app", expect=2)
    assert "not the android demo app" in result.stderr and "AndroidManifest.xml" in result.stderr


def test_into_takes_one_target(cli):
    result = cli("export", "--model", "zoo:digits", "--target", "android,ios", "--into", str(ROOT / "ios_demo"),
                 expect=2)
    assert "one target" in result.stderr


def test_ios_demo_gets_its_model_folder(tmp_path):
    from deploytool.demo_apps import install_into_demo

    exported = tmp_path / "ios"
    exported.mkdir()
    (exported / "model.pte").write_bytes(b"program")
    (exported / "manifest.json").write_text("{}")
    demo = shutil.copytree(ROOT / "ios_demo", tmp_path / "ios_demo")
    copied = install_into_demo(exported, demo, target="ios")
    assert copied == [demo / "DemoApp" / "Model" / "model.pte", demo / "DemoApp" / "Model" / "manifest.json"]
    assert copied[0].read_bytes() == b"program"
