"""Shared fixtures: real data written once per session, and a CLI runner that works in a folder."""
from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import Cli


@pytest.fixture(scope="session")
def digit_images(tmp_path_factory) -> Path:
    """899 real 8x8 digits (never used to train the zoo model) as PNGs, one folder per class."""
    from model_zoo.digits.images import write_digit_images

    return write_digit_images(tmp_path_factory.mktemp("data") / "digits")


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """48 real photo crops from scikit-learn's bundled sample images."""
    from model_zoo.photos import write_photos

    return write_photos(tmp_path_factory.mktemp("data") / "photos", 48)


@pytest.fixture(scope="session")
def exported_all(tmp_path_factory, digit_images) -> tuple[Path, str]:
    """zoo:digits quantized on real digits, then `export --target all`: the output folder and stdout.

    Shared by the server-format and bench tests; a test that writes into an output folder copies it first.
    """
    folder = tmp_path_factory.mktemp("all")
    cli = Cli(folder)
    cli("quantize", "--model", "zoo:digits", "--calib", str(digit_images), "--holdout", "0.5")
    result = cli("export", "--target", "all")
    return folder / "build" / "deploytool", result.stdout


@pytest.fixture
def cli(tmp_path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def local_ray():
    """A Ray instance of 2 CPUs started for the test; executors use it and leave it running."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'deploytool[ray]')")
    # address="local": a new instance on loopback, never a cluster someone started on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
