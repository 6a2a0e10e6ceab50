"""A folder of 64 `.pt` files, one sentence each: `{"token_ids": int64 [length]}`, lengths 4 to 24, no padding
(variable-length samples: the length axis differs from file to file). No task."""
from pathlib import Path

import numpy as np

from corpus.samples import SAMPLES, tokens


def write_data(folder: Path) -> Path:
    import torch

    ids, mask = tokens(np.random.default_rng(24), SAMPLES, 24, vocab=3000, shortest=4)
    target = folder / "sentences"
    target.mkdir(parents=True, exist_ok=True)
    for i, (row, row_mask) in enumerate(zip(ids, mask)):
        torch.save({"token_ids": torch.from_numpy(row[row_mask == 1].copy())}, target / f"sentence_{i:03d}.pt")
    return target
