"""Isolation: each artifact runs in its runtime in a child process. A segfault, abort or hang there is a failed
check naming the artifact and the signal, and the run goes on to check the other artifacts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deploytool.runtime import failure_verdict, run_artifact

SAMPLES = [(np.zeros((1, 4), np.float32),)]


@pytest.mark.parametrize("fmt, signal_name", [("segfault", "SIGSEGV"), ("abort", "SIGABRT")])
def test_a_crashing_runtime_is_a_failed_run_naming_artifact_and_signal(misbehaving, fmt, signal_name):
    result = run_artifact(misbehaving, fmt, SAMPLES, timeout_s=120)
    assert not result.ok
    assert result.error.startswith("model.bin: ")
    assert f"crashed with {signal_name}" in result.error
    assert failure_verdict(result.error) == "CRASH"


def test_a_hanging_runtime_is_stopped_at_the_timeout(misbehaving):
    result = run_artifact(misbehaving, "hang", SAMPLES, timeout_s=3)
    assert not result.ok
    assert "model.bin: the hang runtime did not finish within 3 s" in result.error
    assert result.seconds < 60
    assert failure_verdict(result.error) == "HANG"


def test_a_segfaulting_artifact_fails_its_check_and_the_others_are_still_checked(cli, misbehaving, tmp_path):
    """Through `deploytool export`: the segfaulting artifact's row says CRASH with SIGSEGV, the .pte next to it is
    still run in ExecuTorch and passes, and the run exits 1 (a check failed) rather than crashing."""
    result = cli("export", "--model", "zoo:digits", "--target", "crashy", "--precision", "fp32", "--holdout", "0.05",
                 expect=1)
    rows = {line.split()[2]: line for line in result.stdout.splitlines() if line.startswith("zoo:digits")}
    assert rows["model.segv"].rstrip().endswith("CRASH")
    assert rows["model.pte"].rstrip().endswith("PASS")
    assert "model.segv: the segv runtime crashed with SIGSEGV" in result.stdout
    assert "Parity failed for crashy" in result.stderr and "Traceback" not in result.stderr
    report = json.loads((tmp_path / "build" / "deploytool" / "crashy" / "report.json").read_text())
    by_file = {a["file"]: a for a in report["artifacts"]}
    assert "SIGSEGV" in by_file["model.segv"]["parity"]["run_error"] and not by_file["model.segv"]["passed"]
    assert by_file["model.pte"]["passed"] and by_file["model.pte"]["parity"]["comparisons"]
