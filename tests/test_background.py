"""Lowering in a forked child while the search goes on (deploytool.export.background), on the digits CNN."""
from __future__ import annotations

import json
import os
import re

import pytest
from test_search import BETWEEN_DB

from deploytool.export.background import can_fork, lower_in_background

pytestmark = pytest.mark.skipif(not can_fork(), reason="background lowering forks: Linux with 2+ cores only")


def _child_pid(stderr: str) -> int:
    return int(re.search(r"lowering dynamic int8 in the background \(pid (\d+)\)", stderr).group(1))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _leftovers(cache):
    return sorted(p.name for p in cache.iterdir() if p.name.endswith(".tmp"))


def test_the_kept_dynamic_pte_is_the_one_the_child_lowered(cli, digit_images):
    import torch

    from deploytool.export.executorch import lower_pte

    result = cli("quantize", "--model", "zoo:digits", "--calib", str(digit_images), "--holdout", "0.3",
                 "--min-sqnr", str(BETWEEN_DB))
    out = cli.folder / "build/deploytool"
    steps = json.loads((out / "quantized/quantize.json").read_text())["recipe"]["search"]["steps"]
    assert [s["name"] for s in steps] == ["static int8", "dynamic int8"] and steps[-1]["met"]
    pid = _child_pid(result.stderr)
    assert "waiting for the background lowering of dynamic int8" in result.stderr
    assert "reusing the lowered .pte from" in result.stderr  # the search measured the child's .pte
    assert _gone(pid) and _leftovers(out / ".cache/pte") == []
    # What the child wrote is what this process would have lowered from the kept program.
    (cached,) = (out / ".cache/pte").glob("*.pte")
    assert cached.read_bytes() == lower_pte(torch.export.load(out / "quantized/program.pt2"))[0]


def test_a_child_whose_pte_is_not_needed_is_stopped(cli, digit_images):
    result = cli("quantize", "--model", "zoo:digits", "--calib", str(digit_images), "--holdout", "0.3")
    out = cli.folder / "build/deploytool"
    steps = json.loads((out / "quantized/quantize.json").read_text())["recipe"]["search"]["steps"]
    assert [s["name"] for s in steps] == ["static int8"]  # static met: dynamic's lowering was never needed
    assert _gone(_child_pid(result.stderr)) and _leftovers(out / ".cache/pte") == []


def test_a_child_that_fails_is_reaped_once_and_leaves_no_files(tmp_path):
    def broken():
        raise RuntimeError("the variant cannot be built")

    ahead = lower_in_background(broken, print, cache_dir=tmp_path, label="broken")
    ahead.wait()  # the child failed: the caller lowers the program itself
    ahead.stop()  # reaped already: nothing is signalled
    assert ahead.reaped and _gone(ahead.pid) and list(tmp_path.iterdir()) == []
