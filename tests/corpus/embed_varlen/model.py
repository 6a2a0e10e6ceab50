"""A bag-of-embeddings sentence encoder fed one unpadded sentence per sample, as a serving loop calls it: token
ids of any length from 4 to 24 (int64 [batch, length]) -> Embedding -> mean over the tokens -> 2-layer MLP ->
L2-normalised 64-d embedding. No mask: there is no padding."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class BagEncoder(nn.Module):
    def __init__(self, vocab_size=3000, width=96, out_dim=64):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, out_dim))

    def forward(self, token_ids):
        return F.normalize(self.mlp(self.embed(token_ids).mean(dim=1)), dim=-1)


def build():
    torch.manual_seed(0)
    return BagEncoder().eval()
