"""Start-up stays light: listing, help and usage/config errors never import torch or any runtime."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("torch", "torchvision", "torchao", "executorch", "onnx", "onnxruntime", "onnxscript")

# Each runs through the real entry point in a fresh interpreter, then reports what got imported.
PROBE = textwrap.dedent("""
    import json, sys
    from deploytool.cli import main
    try:
        main(sys.argv[1:])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    print(json.dumps({"code": code, "heavy": sorted(m for m in %r if m in sys.modules)}), file=sys.stderr)
""" % (HEAVY,))


def _probe(args: list[str], cwd) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)
    return json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("args, code", [
    (["--help"], 0),
    (["quantize", "--help"], 0),
    (["export", "--help"], 0),
    (["check", "--help"], 0),
    (["zoo", "list"], 0),
    (["targets"], 0),
    (["bench", "--help"], 0),
    (["inspect", "--help"], 0),
    (["export", "--target", "andriod"], 2),  # unknown target: a usage error, before any model loads
    (["bench", "--threads", "two"], 2),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_commands_that_do_no_model_work_import_no_torch(args, code, tmp_path):
    result = _probe(args, tmp_path)
    assert result["code"] == code
    assert result["heavy"] == [], f"deploytool {' '.join(args)} imported {result['heavy']}"


def test_config_error_imports_no_torch(tmp_path):
    (tmp_path / "deploytool.toml").write_text('modle = "zoo:digits"\n')
    result = _probe(["export", "--target", "android"], tmp_path)
    assert result["code"] == 2
    assert result["heavy"] == []


def test_import_deploytool_is_light():
    code = "import sys, deploytool; print(sorted(m for m in sys.modules if m.split('.')[0] in %r + ('numpy', 'click')))"
    done = subprocess.run([sys.executable, "-c", code % (HEAVY,)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
