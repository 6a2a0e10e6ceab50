"""A small transformer-encoder text classifier over the hand-written corpus in corpus.tsv (four topics).

Token ids in, logits out: `ids` is int64 [1, SEQ_LEN], words looked up in vocab.txt (built from the
training sentences), 0 = padding, 1 = unknown word.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).parent
CORPUS = HERE / "corpus.tsv"
VOCAB = HERE / "vocab.txt"
CHECKPOINT = HERE / "text_classifier.pt"
LABELS = ("weather", "cooking", "sports", "computing")
SEQ_LEN = 24  # the longest sentence has 14 words; room for longer user input without truncation
PAD, UNKNOWN = 0, 1


class EncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer, written out rather than nn.TransformerEncoderLayer: under
    inference mode torch's layer takes a fused fast path (aten._transformer_encoder_layer_fwd) that
    ExecuTorch cannot lower."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.feed_forward = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.dropout = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        mixed = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attend)
        x = x + self.dropout(self.out(mixed.transpose(1, 2).reshape(batch, length, dim)))
        return x + self.dropout(self.feed_forward(self.norm2(x)))


class TextClassifier(nn.Module):
    def __init__(self, vocab_size: int, dim: int = 32, heads: int = 4, layers: int = 1) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.position = nn.Parameter(torch.zeros(1, SEQ_LEN, dim))
        self.layers = nn.ModuleList(EncoderLayer(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, len(LABELS))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        real = ids != PAD
        attend = real[:, None, None, :]  # every position attends to the real words only
        x = self.embed(ids) + self.position
        for layer in self.layers:
            x = layer(x, attend)
        keep = real.unsqueeze(-1).to(x.dtype)
        pooled = (x * keep).sum(1) / keep.sum(1).clamp(min=1.0)  # mean over the real words only
        return self.classifier(self.norm(pooled))


def architecture() -> TextClassifier:
    return TextClassifier(len(read_vocab()))


def build() -> TextClassifier:
    """The trained model, in eval mode."""
    model = architecture()
    model.load_state_dict(torch.load(CHECKPOINT, weights_only=True))
    return model.eval()


def read_corpus() -> tuple[list[str], np.ndarray]:
    """Sentences and their label indices, in file order."""
    sentences, labels = [], []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            label, sentence = line.split("\t")
            sentences.append(sentence)
            labels.append(LABELS.index(label))
    return sentences, np.asarray(labels, np.int64)


def split_indices(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Two of every three sentences train the model; every third is never trained on and feeds calibration and
    parity (topics are interleaved evenly because the file is grouped by topic)."""
    indices = np.arange(count)
    return indices[indices % 3 != 0], indices[indices % 3 == 0]


def words(sentence: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", sentence.lower())


def read_vocab() -> list[str]:
    return VOCAB.read_text(encoding="utf-8").split("\n")


def encode(sentence: str, vocab: list[str]) -> np.ndarray:
    """int64 [SEQ_LEN] ids, padded with 0; words past SEQ_LEN are dropped."""
    index = {word: i for i, word in enumerate(vocab)}
    ids = [index.get(word, UNKNOWN) for word in words(sentence)][:SEQ_LEN]
    return np.asarray(ids + [PAD] * (SEQ_LEN - len(ids)), np.int64)
