"""Write the sentences never used in training as token-id files, one sub-folder per topic: real data for
calibration, parity and accuracy."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from model_zoo.text.model import LABELS, encode, read_corpus, read_vocab, split_indices


def write_sentences(folder: Path) -> Path:
    """`folder/<topic>/sentence_NNN.npy`, each int64 [1, SEQ_LEN] (one sample)."""
    sentences, labels = read_corpus()
    vocab = read_vocab()
    _, held_out = split_indices(len(labels))
    for index in held_out:
        target = folder / LABELS[labels[index]] / f"sentence_{index:03d}.npy"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            np.save(target, encode(sentences[index], vocab)[None])
    return folder


def label_of(ref) -> int | None:
    """The topic of a sample written by `write_sentences`, from its folder name."""
    topic = ref.path.parent.name
    return LABELS.index(topic) if topic in LABELS else None


if __name__ == "__main__":
    out = write_sentences(Path(sys.argv[1] if len(sys.argv) > 1 else "sentences"))
    print(f"wrote {sum(1 for _ in out.rglob('*.npy'))} encoded sentences to {out}", file=sys.stderr)
