"""A GRU text classifier as in a PyTorch text tutorial: Embedding -> bidirectional GRU -> mean over time ->
Linear, on int64 token ids (0 is padding).
"""
import torch
from torch import nn

VOCAB, EMBED, HIDDEN, CLASSES = 2000, 64, 64, 4  # topics: world, sports, business, sci/tech


class TextClassifier(nn.Module):
    def __init__(self, vocab_size=VOCAB, embed_dim=EMBED, hidden=HIDDEN, num_classes=CLASSES):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.gru = nn.GRU(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, num_classes)

    def forward(self, text):
        embedded = self.embedding(text)  # [batch, seq, embed]
        output, _ = self.gru(embedded)  # [batch, seq, 2 * hidden]
        return self.fc(output.mean(dim=1))


def build():
    torch.manual_seed(0)
    model = TextClassifier()
    # Stands in for training: with PyTorch's default init the four topics stay within 0.1 of a tie.
    nn.init.normal_(model.fc.weight, std=1.0)
    return model.eval()
