"""Train the digits CNN reproducibly: `python -m model_zoo.digits.train` rewrites digits_cnn.pt."""
from __future__ import annotations

import torch
from torch import nn

from model_zoo.digits.model import CHECKPOINT, DigitsCNN, digits_as_pixels, normalise, split_indices

SEED = 0
EPOCHS = 40
BATCH = 64


def train() -> DigitsCNN:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    pixels, labels = digits_as_pixels()
    train_idx, test_idx = split_indices(len(labels))
    x, y = torch.from_numpy(normalise(pixels[train_idx])), torch.from_numpy(labels[train_idx])
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, EPOCHS)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(SEED)
    for _ in range(EPOCHS):
        model.train()
        for batch in torch.randperm(len(x), generator=generator).split(BATCH):
            optimizer.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimizer.step()
        schedule.step()
    model.eval()
    with torch.no_grad():
        test_x = torch.from_numpy(normalise(pixels[test_idx]))
        accuracy = (model(test_x).argmax(1).numpy() == labels[test_idx]).mean()
    print(f"held-out accuracy {accuracy:.4f} on {len(test_idx)} digits never used in training")
    return model


if __name__ == "__main__":
    trained = train()
    torch.save(trained.state_dict(), CHECKPOINT)
    print(f"wrote {CHECKPOINT}")
