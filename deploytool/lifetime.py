"""Child processes that end with the process that started them, however it ends (kill -9 included)."""
from __future__ import annotations

import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def end_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when `parent`, the process that started it, dies (Linux only:
    PR_SET_PDEATHSIG; elsewhere nothing changes). Called first thing in a child: a killed deploytool then leaves
    no lowering or worker behind that keeps a core busy. The signal follows the thread that started the child,
    so start children from a thread that outlives them."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
