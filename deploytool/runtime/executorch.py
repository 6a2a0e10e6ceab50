"""Run a .pte through ExecuTorch's runtime (the C++ runtime the Android and iOS libraries wrap)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def run(path: Path, samples: list[tuple[np.ndarray, ...]]) -> list[list[np.ndarray]]:
    import torch
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(path).load_method("forward")
    results = []
    for sample in samples:
        outputs = method.execute(tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in sample))
        results.append([o.detach().numpy().copy() for o in outputs])
    return results
