"""Sentences of 6 to 32 token ids from a 1000-word vocabulary ([CLS] ... [SEP], right-padded with 0) and the
attention mask that matches; `targets` are eager's confident labels (-1 where eager did not decide)."""
from pathlib import Path

import numpy as np

from corpus.samples import SAMPLES, decided_top1, eager, save_npz, tokens

LENGTH = 32


def write_data(folder: Path) -> Path:
    rng = np.random.default_rng(24)
    input_ids, attention_mask = tokens(rng, SAMPLES, LENGTH, vocab=1000)
    logits = eager(Path(__file__).parent, {"input_ids": input_ids, "attention_mask": attention_mask},
                   output=lambda out: out.logits)
    return save_npz(folder, "sentences.npz", input_ids=input_ids, attention_mask=attention_mask,
                    targets=decided_top1(logits))
