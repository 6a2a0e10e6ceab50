"""64 texts of 6 to 32 token ids from a 512-token vocabulary (`input_ids`, int64 [64, 32], Zipf-distributed,
right-padded with 0) and the `attention_mask` that matches; `targets` [64, 32] are eager's confident next token
at each real position (-1 at padding and where eager did not decide)."""
from pathlib import Path

import numpy as np

from corpus.samples import SAMPLES, UNDECIDED, decided_top1, eager, save_npz, tokens


def write_data(folder: Path) -> Path:
    input_ids, attention_mask = tokens(np.random.default_rng(512), SAMPLES, 32, vocab=512, cls=None, sep=None,
                                       first_word=1)
    logits = eager(Path(__file__).parent, {"input_ids": input_ids, "attention_mask": attention_mask},
                   output=lambda out: out.logits)
    targets = np.where(attention_mask == 1, decided_top1(logits), UNDECIDED)
    return save_npz(folder, "texts.npz", input_ids=input_ids, attention_mask=attention_mask, targets=targets)
