"""Lowering in a forked child while the search goes on (deploytool.export.background), on the digits CNN."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from processes import ended, state, wait_until
from test_search import BETWEEN_DB

from deploytool.export.background import can_fork, lower_in_background

pytestmark = pytest.mark.skipif(not can_fork(), reason="background lowering forks: Linux with 2+ cores only")


def _child_pid(stderr: str) -> int:
    return int(re.search(r"lowering dynamic int8 in the background \(pid (\d+)\)", stderr).group(1))


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
    assert ended(pid) and _leftovers(out / ".cache/pte") == []
    # What the child wrote is what this process would have lowered from the kept program.
    (cached,) = (out / ".cache/pte").glob("*.pte")
    assert cached.read_bytes() == lower_pte(torch.export.load(out / "quantized/program.pt2"))[0]


def test_a_child_whose_pte_is_not_needed_is_stopped(cli, digit_images):
    result = cli("quantize", "--model", "zoo:digits", "--calib", str(digit_images), "--holdout", "0.3")
    out = cli.folder / "build/deploytool"
    steps = json.loads((out / "quantized/quantize.json").read_text())["recipe"]["search"]["steps"]
    assert [s["name"] for s in steps] == ["static int8"]  # static met: dynamic's lowering was never needed
    assert ended(_child_pid(result.stderr)) and _leftovers(out / ".cache/pte") == []
    assert len(list((out / ".cache/pte").glob("*.pte"))) == 1, "static int8's, measured by the search: no other"


def test_a_child_that_fails_is_reaped_once_and_leaves_no_files(tmp_path):
    def broken():
        raise RuntimeError("the variant cannot be built")

    ahead = lower_in_background(broken, lambda program, claim: None, cache_dir=tmp_path, label="broken")
    ahead.wait()  # the child failed: the caller lowers the program itself
    ahead.stop()  # reaped already: nothing is signalled
    assert ahead.reaped and ended(ahead.pid) and list(tmp_path.iterdir()) == []


def test_a_child_that_finished_before_it_was_stopped_leaves_no_entry(tmp_path):
    # The race CI hit: on the small digits CNN the child's .pte was complete before static int8 met the budget.
    entry = tmp_path / "0123.pte"
    ahead = lower_in_background(lambda: b"lowered", _claiming_writer(entry), cache_dir=tmp_path, label="finished")
    wait_until(lambda: state(ahead.pid) == "Z", "the child did not finish", 60)  # exited, not yet reaped
    assert entry.read_bytes() == b"lowered"
    ahead.stop()
    assert ended(ahead.pid) and list(tmp_path.iterdir()) == []


def test_a_waited_for_child_keeps_what_it_wrote(tmp_path):
    entry = tmp_path / "0123.pte"
    ahead = lower_in_background(lambda: b"lowered", _claiming_writer(entry), cache_dir=tmp_path, label="needed")
    ahead.wait()
    ahead.stop()  # the search always stops it at its end: what was waited for stays
    assert entry.read_bytes() == b"lowered"


def _claiming_writer(entry: Path):
    """A child's lowering stand-in: claims `entry`, then writes the built bytes there."""
    def lower(program: bytes, claim) -> None:
        claim([entry])
        entry.write_bytes(program)
    return lower


def test_a_child_dies_with_its_killed_parent(tmp_path):
    import signal
    import subprocess
    import sys

    # A parent that forks a child whose work never ends, then is killed as a user's kill -9 would.
    script = tmp_path / "parent.py"
    script.write_text(
        "import time\n"
        "from pathlib import Path\n"
        "from deploytool.export.background import lower_in_background\n"
        f"started = Path({str(tmp_path / 'started')!r})\n"
        "def endless():\n"
        "    started.touch()\n"
        "    time.sleep(600)\n"
        f"ahead = lower_in_background(endless, lambda p, c: None, cache_dir=Path({str(tmp_path)!r}), label='endless')\n"
        "print(ahead.pid, flush=True)\n"
        "time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    # Past its set-up: only the kernel can end it with its parent now.
    wait_until((tmp_path / "started").exists, "the background child never started its work", 60)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    wait_until(lambda: ended(child), "the background child outlived its killed parent")


@pytest.mark.parametrize("threads", [2, 3])
def test_the_search_leaves_the_child_one_core(threads):
    import torch

    from deploytool.steps.quantize import a_core_left_beside

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with a_core_left_beside(ahead=object()):  # any running child
            assert torch.get_num_threads() == threads - 1
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
