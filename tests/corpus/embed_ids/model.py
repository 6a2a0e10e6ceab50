"""A tiny sentence-embedding model in the sentence-transformers style: token Embedding -> masked mean pooling ->
Linear projection -> L2 normalisation. Inputs: input_ids and attention_mask (int64)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, WIDTH, EMBEDDING = 3000, 96, 64


class SentenceEncoder(nn.Module):
    def __init__(self, vocab_size=VOCAB, width=WIDTH, embedding_dim=EMBEDDING):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, width, padding_idx=0)
        self.proj = nn.Linear(width, embedding_dim)

    def mean_pool(self, token_embeddings, attention_mask):
        mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
        return (token_embeddings * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def forward(self, input_ids, attention_mask):
        pooled = self.mean_pool(self.tok(input_ids), attention_mask)
        return F.normalize(self.proj(pooled), p=2, dim=-1)


def build():
    torch.manual_seed(0)
    return SentenceEncoder().eval()
