"""Config: file formats, precedence, validation with did-you-mean, paths relative to the file."""
from pathlib import Path

import pytest

from deploytool.config import Color, ConfigError, Precision, load_config, parse_config


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_deploytool_toml_is_read_and_typed(tmp_path):
    write(tmp_path / "deploytool.toml", """
model = "model.py:build"
targets = ["android", "ios"]
precision = "int8"
[[inputs]]
name = "x"
shape = [1, 3, 32, 32]
[preprocess]
color = "L"
mean = [0.5]
std = [0.25]
[data]
calib = "photos"
calib_limit = 10
[parity.int8]
min_sqnr_db = 20
""")
    config = load_config(tmp_path)
    assert config.model == "model.py:build"
    assert config.targets == ("android", "ios")
    assert config.precision is Precision.INT8
    assert config.inputs[0].shape == (1, 3, 32, 32)
    assert config.preprocess.color is Color.L
    assert config.data.calib_limit == 10
    assert config.parity.int8.min_sqnr_db == 20.0
    assert config.path(config.data.calib) == (tmp_path / "photos").resolve()


def test_pyproject_tool_table_is_used_when_no_deploytool_toml(tmp_path):
    write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n[tool.deploytool]\nmodel = "zoo:digits"\n')
    assert load_config(tmp_path).model == "zoo:digits"


def test_flags_override_the_file_and_the_file_overrides_the_recorded_run(tmp_path):
    write(tmp_path / "deploytool.toml", 'model = "from_file.py:build"\n[data]\ncalib = "file_data"\n')
    config = load_config(tmp_path, overrides={"data.calib": "flag_data"},
                         fallback={"model": "recorded.py:build", "output": "elsewhere", "data": {"calib": "old"}})
    assert config.model == "from_file.py:build"
    assert config.data.calib == "flag_data"
    assert config.output == "elsewhere"


@pytest.mark.parametrize("text, fragment", [
    ('modle = "x"', "unknown key 'modle'. Did you mean 'model'?"),
    ('[data]\ncalib_limt = 3', "unknown key 'data.calib_limt'. Did you mean 'calib_limit'?"),
    ('targets = "android"', "'targets' must be a list"),
    ('[data]\nholdout = 1.5', "data.holdout = 1.5: must be between 0 and 1"),
    ('[data]\ncalib_limit = "ten"', "'data.calib_limit' must be int"),
    ('precision = "int4"', "'precision' = 'int4' is not valid. Did you mean 'int8'?"),
    ('[[inputs]]\nname = "x"\nshape = [1, 3]\ndtype = "float"', "unknown dtype 'float'"),
    ('[preprocess]\nstd = [0.0]', "divides by zero"),
    ('model = ', "not valid TOML"),
])
def test_bad_config_names_file_and_field(tmp_path, text, fragment):
    path = write(tmp_path / "deploytool.toml", text)
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path)
    assert fragment in error.value.message
    assert str(path) in error.value.message


def test_round_trip_through_to_dict():
    config = parse_config({"model": "zoo:digits", "targets": ["ios"], "data": {"holdout": 0.3}})
    assert parse_config(config.to_dict()) == config


FLAGS = {"data.holdout": "--holdout", "data.calib_limit": "--calib-limit"}


def test_a_bad_flag_value_is_reported_as_that_flags(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path, overrides={"data.holdout": 1.5}, override_names=FLAGS)
    assert error.value.message.startswith("--holdout: data.holdout = 1.5: must be between 0 and 1")


def test_a_bad_file_value_is_reported_as_the_files_even_with_flags(tmp_path):
    path = write(tmp_path / "deploytool.toml", "[data]\nholdout = 1.5\n")
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path, overrides={"data.calib_limit": 0}, override_names=FLAGS)
    assert error.value.message.startswith(f"{path}: data.holdout = 1.5")
    # A flag that replaces the bad value fixes the run; another bad flag is then the one reported.
    assert load_config(tmp_path, overrides={"data.holdout": 0.5}).data.holdout == 0.5
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path, overrides={"data.holdout": 0.5, "data.calib_limit": 0}, override_names=FLAGS)
    assert error.value.message.startswith("--calib-limit: data.calib_limit = 0: must be at least 1")


@pytest.mark.parametrize("text, fragment, hint", [
    ("calib_limt = 3", "unknown key 'calib_limt'. Did you mean [data] calib_limit?", "under [data], write calib_limit = 3"),
    ("calib_limit = 3", "unknown key 'calib_limit'. Did you mean [data] calib_limit?", "under [data]"),
    ("[data]\nper_channel = false", "Did you mean [quantize] per_channel?", "write per_channel = false"),
    ('dtype = "int64"', "Did you mean [[inputs]] dtype?", 'under [[inputs]], write dtype = "int64"'),
    ('[data]\nmodel = "m.py:build"', "Did you mean top-level model?", 'above the first [table]: model = "m.py:build"'),
    ('targets = "android"', "'targets' must be a list", 'targets = ["android"]'),
    ("[preprocess]\ncenter_crop = 224", "must be a list", "center_crop = [224, 224]"),
    ('[inputs]\nname = "x"', "'inputs' must be a list", "one [[inputs]] table per item"),
], ids=["typo-at-top-level", "misplaced-at-top-level", "misplaced-in-table", "input-key-at-top-level",
        "top-level-key-in-table", "string-for-list", "number-for-pair", "table-for-list-of-tables"])
def test_misplaced_or_mistyped_key_says_where_and_how_to_write_it(tmp_path, text, fragment, hint):
    write(tmp_path / "deploytool.toml", text)
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path)
    assert fragment in error.value.message
    assert hint in (error.value.hint or "")


def test_misplaced_key_in_pyproject_names_the_tool_table(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.deploytool]\ncalib_limit = 3\n")
    with pytest.raises(ConfigError, match=r"Did you mean \[tool\.deploytool\.data\] calib_limit\?"):
        load_config(tmp_path)
