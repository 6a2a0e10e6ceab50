"""Helpers for the fault matrix: tiny models, failure checks, dropping root privileges."""
from __future__ import annotations

import contextlib
import os
import textwrap
from pathlib import Path

import pytest

# Small models, each named for the fault it shows. Written into the project folder as model.py.
MODELS = textwrap.dedent('''
    import torch
    from torch import nn


    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x)


    def build():
        torch.manual_seed(0)
        return Tiny().eval()


    def explode():
        raise ValueError("weights server unreachable")


    def not_a_module():
        return {"fc": "not a module"}


    class Branchy(Tiny):
        def forward(self, x):
            if x.sum() > 0:  # branches on a tensor value: torch.export cannot capture this
                return self.fc(x)
            return self.fc(-x)


    def branchy():
        return Branchy().eval()


    class PartlyDelegated(Tiny):
        def forward(self, x):
            return torch.cumsum(self.fc(x), dim=-1)  # XNNPACK has no cumsum: it stays on the portable CPU path


    def partly_delegated():
        torch.manual_seed(0)
        return PartlyDelegated().eval()


    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x, y):
            return self.fc(x) + self.fc(y)


    def two_inputs():
        return TwoInputs().eval()
''')

CALIB_SAMPLES = 40
QUANTIZED_PROGRAM = Path("build") / "deploytool" / "quantized" / "program.pt2"  # default output


def assert_fails(result, exit_code: int, *fragments: str) -> None:
    """The failure a user sees: the exit code, an `error:` line with each fragment, and no traceback."""
    output = result.stdout + result.stderr
    assert result.exit_code == exit_code, f"exit {result.exit_code}, expected {exit_code}\n{output}"
    assert "Traceback" not in output, output
    assert "error:" in result.stderr or "interrupted" in result.stderr, output
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr}"


def assert_nothing_half_written(folder: Path) -> None:
    """No temp files from an interrupted atomic write anywhere under `folder`."""
    leftovers = [p for p in folder.rglob("*.tmp")]
    assert not leftovers, f"half-written files left behind: {leftovers}"


@contextlib.contextmanager
def unprivileged():
    """Run the block without root's power to read any file, so chmod 000 means what it says.

    Root bypasses file permissions; switching the effective uid to `nobody` (and back) restores them.
    """
    if not hasattr(os, "geteuid"):
        pytest.skip("file permissions are POSIX-only")
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def assert_untouched(folder: Path, previous: dict[str, bytes]) -> None:
    """Every file of the previous run still has its bytes: an interrupted run replaced nothing."""
    for name, data in previous.items():
        if name.endswith(".lock"):
            continue
        assert (folder / name).read_bytes() == data, f"{name} changed"
