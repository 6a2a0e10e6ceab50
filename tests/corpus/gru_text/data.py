"""64 texts of 8 to 40 token ids (`text`, int64 [64, 40]) from a 2000-word vocabulary, Zipf-distributed word
frequencies, right-padded with 0 (no [CLS]/[SEP]: a plain tokenizer); `targets` are eager's confident topics
(-1 where eager did not decide)."""
from pathlib import Path

import numpy as np

from corpus.samples import SAMPLES, decided_top1, eager, save_npz, tokens


def write_data(folder: Path) -> Path:
    text, _ = tokens(np.random.default_rng(40), SAMPLES, 40, vocab=2000, shortest=8, cls=None, sep=None,
                     first_word=1)
    return save_npz(folder, "texts.npz", text=text,
                    targets=decided_top1(eager(Path(__file__).parent, {"text": text})))
