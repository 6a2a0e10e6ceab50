"""64 sentences of 4 to 24 token ids from a 3000-word vocabulary with [CLS]/[SEP] (`input_ids`, int64 [64, 24]),
right-padded with 0, and the `attention_mask` that matches. No task: the embedding has no labels."""
from pathlib import Path

import numpy as np

from corpus.samples import SAMPLES, save_npz, tokens


def write_data(folder: Path) -> Path:
    input_ids, attention_mask = tokens(np.random.default_rng(3000), SAMPLES, 24, vocab=3000, shortest=4)
    return save_npz(folder, "sentences.npz", input_ids=input_ids, attention_mask=attention_mask)
