"""Property-based tests: the config parser and the data loaders turn any input into a value or a DeployError.

Bounded example counts keep this under a minute in CI; a failure prints the shrunk example to reproduce.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from deploytool.config import ProjectConfig, parse_config
from deploytool.data import SampleSkipped
from deploytool.data.arrays import array_files
from deploytool.data.images import load_image
from deploytool.errors import ConfigError, DataError
from deploytool.config import Preprocess

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Values as TOML or JSON can spell them, nested a little.
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                    st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                             max_size=4), max_leaves=12)
# Real key names at every level, so the fuzzer gets past "unknown key" into type and range checks.
known_keys = st.sampled_from(["model", "weights", "trust_checkpoint", "inputs", "preprocess", "labels", "data",
                              "quantize", "targets", "precision", "parity", "output", "calib", "calib_limit",
                              "holdout", "holdout_min", "batch_size", "per_channel", "resize", "center_crop",
                              "color", "scale", "mean", "std", "layout", "name", "shape", "dtype", "fp32", "int8",
                              "timeout_s", "min_sqnr_db"])
tables = st.recursive(st.dictionaries(known_keys | st.text(max_size=8), values, max_size=5),
                      lambda inner: st.dictionaries(known_keys, inner | values, max_size=5), max_leaves=20)


@FUZZ
@given(tables)
def test_parse_config_raises_only_config_errors(table):
    try:
        config = parse_config(table, source="fuzz.toml")
    except ConfigError as exc:
        assert exc.message.startswith("fuzz.toml"), exc.message  # every message names the file
    else:
        assert isinstance(config, ProjectConfig)


@FUZZ
@given(st.dictionaries(st.sampled_from(["holdout", "calib_limit", "batch_size", "holdout_min", "calib"]), scalars,
                       min_size=1))
def test_data_section_values_are_validated(data):
    try:
        config = parse_config({"data": data}, source="fuzz.toml")
    except ConfigError:
        return
    if "holdout" in data:
        assert 0 < config.data.holdout < 1
    if data.get("calib_limit") is not None:
        assert config.data.calib_limit >= 1


@FUZZ
@given(st.binary(max_size=2048), st.sampled_from([".png", ".jpg", ".bmp", ".webp"]))
def test_random_bytes_as_an_image_are_skipped(tmp_path, data, suffix):
    path = tmp_path / f"sample{suffix}"
    path.write_bytes(data)
    try:
        array = load_image(path, Preprocess())
    except SampleSkipped as exc:
        assert "not a readable image" in str(exc)
    else:  # a handful of byte strings are valid images (e.g. tiny BMPs); then they must decode sensibly
        assert array.dtype == np.float32 and array.ndim == 3 and np.isfinite(array).all()


@FUZZ
@given(hnp.arrays(dtype=hnp.scalar_dtypes(), shape=hnp.array_shapes(min_dims=0, max_dims=4, max_side=4)))
def test_random_npy_arrays_load_or_raise_data_error(tmp_path, array):
    path = tmp_path / "calib.npy"
    np.save(path, array)
    try:
        dataset = array_files([path], ("x",), str(path))
        samples = list(dataset.samples())
    except DataError as exc:
        assert str(path) in exc.message or "calib.npy" in exc.message
        return
    assert len(samples) == (array.shape[0] if array.ndim else 0)
    for _, (sample,) in samples:
        assert sample.shape == array.shape[1:]


@FUZZ
@given(st.binary(max_size=512), st.sampled_from([".npy", ".npz", ".pt"]))
def test_random_bytes_as_array_files_raise_data_error(tmp_path, data, suffix):
    path = tmp_path / f"calib{suffix}"
    path.write_bytes(data)
    with pytest.raises(DataError, match="calib"):
        list(array_files([path], ("x",), str(path)).samples())
