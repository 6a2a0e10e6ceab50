"""Fault matrix, config stage: bad config files and flags fail with exit 2, naming the file, the key and the fix."""
from __future__ import annotations

from pathlib import Path

import pytest
from faultkit import unprivileged

from deploytool.errors import ConfigError, UsageError

CASES = [
    # id, file name, file content, extra args, error, fragments
    pytest.param("deploytool.toml", 'modle = "model.py:build"\n', (), ConfigError,
                 ("unknown key 'modle'", "Did you mean 'model'?"), id="unknown-top-level-key"),
    pytest.param("deploytool.toml", '[data]\ncalib_limt = 8\n', (), ConfigError,
                 ("unknown key 'data.calib_limt'", "Did you mean 'calib_limit'?"), id="unknown-nested-key"),
    pytest.param("deploytool.toml", '[data]\nholdout = "half"\n', (), ConfigError,
                 ("'data.holdout' must be float", "'half'"), id="wrong-type-string-for-float"),
    pytest.param("deploytool.toml", 'calib_limt = 8\n', (), ConfigError,
                 ("unknown key 'calib_limt'", "Did you mean [data] calib_limit?", "hint: Move it: under [data]"),
                 id="misplaced-top-level-key"),
    pytest.param("deploytool.toml", 'targets = "android"\n', (), ConfigError,
                 ("'targets' must be a list", 'hint: Write a list: targets = ["android"]'),
                 id="wrong-type-string-for-list"),
    pytest.param("deploytool.toml", '[data]\nholdout = 1.5\n', (), ConfigError,
                 ("data.holdout = 1.5", "between 0 and 1"), id="out-of-range-holdout"),
    pytest.param("deploytool.toml", 'precision = "int4"\n', (), ConfigError,
                 ("'precision' = 'int4' is not valid", "Known: fp32, int8"), id="unknown-enum-value"),
    pytest.param("deploytool.toml", 'targets = ["andriod"]\n', (), UsageError,
                 ("Unknown target 'andriod'", "Did you mean 'android'?"), id="typo-in-target-name-in-config"),
    pytest.param("deploytool.toml", 'model = "model.py:build"\n[data\n', (), ConfigError,
                 ("not valid TOML",), id="toml-syntax-error"),
    pytest.param("deploytool.toml", "model = \"\xff\"\n", (), ConfigError,
                 ("not valid TOML",), id="toml-not-utf8"),
    pytest.param("settings.json", '{"model": "model.py:build",}', ("--config", "settings.json"), ConfigError,
                 ("settings.json: not valid JSON",), id="json-syntax-error"),
    pytest.param("settings.json", '["model.py:build"]', ("--config", "settings.json"), ConfigError,
                 ("top level must be an object",), id="json-top-level-not-an-object"),
    pytest.param(None, None, ("--config", "missing.toml"), ConfigError,
                 ("missing.toml does not exist",), id="config-file-missing"),
    pytest.param(None, None, ("--target", "andriod"), UsageError,
                 ("Unknown target 'andriod'", "Did you mean 'android'?"), id="typo-in-target-flag"),
    pytest.param(None, None, ("--holdout", "1.5"), ConfigError,
                 ("error: --holdout: data.holdout = 1.5", "between 0 and 1"), id="out-of-range-holdout-flag"),
    pytest.param(None, None, ("--format", "ptee"), UsageError,
                 ("Unknown format 'ptee'", "Did you mean 'pte'?"), id="typo-in-format-flag"),
    # The round's fault matrix: numbers that were accepted and failed late (exit 70) or made every run a HANG.
    pytest.param("deploytool.toml", "[parity]\ntimeout_s = nan\n", (), ConfigError,
                 ("parity.timeout_s = nan", "more than 0"), id="timeout-nan"),
    pytest.param("deploytool.toml", "[parity]\ntimeout_s = inf\n", (), ConfigError,
                 ("parity.timeout_s = inf",), id="timeout-inf"),
    pytest.param("deploytool.toml", "[parity]\ntimeout_s = -1\n", (), ConfigError,
                 ("parity.timeout_s = -1.0", "more than 0"), id="timeout-negative"),
    pytest.param("deploytool.toml", "[parity]\ntimeout_s = " + "9" * 400 + "\n", (), ConfigError,
                 ("'parity.timeout_s' = 99999999999999999999... (400 digits) is too large",), id="timeout-400-digits"),
    pytest.param("deploytool.toml", "[data]\nholdout = 0.000001\nholdout_min = 0\n", (), ConfigError,
                 ("data.holdout_min = 0", "at least 1 sample must be held out"), id="nothing-held-out"),
    pytest.param(None, None, ("--input-shape", "1,100000000000,100000000000"), ConfigError,
                 ("is 1e+22 values", "Check the shape for a typo"), id="shape-of-1e22-values"),
]


@pytest.mark.parametrize("name, content, args, error, fragments", CASES)
def test_config_fault(fault, project, name, content, args, error, fragments):
    if name:
        data = content.encode("latin-1") if "\xff" in content else content.encode()
        (project / name).write_bytes(data)
    fault("export", "--model", "model.py:build", "--calib", "calib.npy", *args,
          error=error, exit_code=2, fragments=fragments)
    assert not (project / "build").exists(), "a config error must stop the run before anything is written"


def test_unreadable_config_file(fault, project, shared_folder):
    """chmod 000 on the config; the run drops root privileges for the check, since root reads any file."""
    config = shared_folder / "deploytool.toml"
    config.write_text('model = "model.py:build"\n')
    config.chmod(0o000)
    with unprivileged():
        fault("export", error=ConfigError, exit_code=2, fragments=("deploytool.toml: cannot read: Permission denied",),
              folder=shared_folder)


def test_config_paths_resolve_relative_to_the_config_file(cli, project, tmp_path_factory):
    """`--config sub/deploytool.toml` from another folder: model, calib and output resolve next to the config."""
    config_dir = project / "sub"
    config_dir.mkdir()
    (config_dir / "model.py").write_text((project / "model.py").read_text())
    (config_dir / "calib.npy").write_bytes((project / "calib.npy").read_bytes())
    (config_dir / "deploytool.toml").write_text('model = "model.py:build"\noutput = "out"\n'
                                                '[data]\ncalib = "calib.npy"\n')
    elsewhere = type(cli)(tmp_path_factory.mktemp("elsewhere"))
    result = elsewhere("quantize", "--config", str(config_dir / "deploytool.toml"), "--json")
    assert Path(result.stdout[result.stdout.index("{"):].split('"program": "')[1].split('"')[0]) == \
        config_dir / "out" / "quantized" / "program.pt2"
    assert (config_dir / "out" / "quantized" / "program.pt2").is_file()
    assert not any(elsewhere.folder.iterdir()), "nothing is written relative to the current directory"
