"""Rebuild the committed weights and data: `python -m digitnet.train` (needs scikit-learn; a few seconds).

Odd-indexed digits of scikit-learn's bundled set train the models; 120 even-indexed ones (never trained on)
become data/digits/<label>/*.png, the calibration and parity data deploytool uses.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from digitnet.model import ARCHITECTURES, MEAN, STD, WEIGHTS

DATA = Path(__file__).resolve().parent.parent / "data" / "digits"
SEED = 0
EPOCHS = 30
PER_CLASS = 12  # 120 images: enough for calibration and a parity check, small enough to commit


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.rint(bunch.images * 255 / 16).astype(np.uint8), bunch.target.astype(np.int64)


def train(kind: str, pixels: np.ndarray, labels: np.ndarray) -> nn.Module:
    torch.manual_seed(SEED)
    x = torch.from_numpy(((pixels.astype(np.float32) / 255 - MEAN) / STD)[:, None])
    y = torch.from_numpy(labels)
    model = ARCHITECTURES[kind]()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(SEED)
    for _ in range(EPOCHS):
        model.train()
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model.eval()


def write_data(pixels: np.ndarray, labels: np.ndarray) -> None:
    from PIL import Image

    for digit in range(10):
        for index in np.flatnonzero(labels == digit)[:PER_CLASS]:
            target = DATA / str(digit) / f"digit_{index:04d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            Image.fromarray(pixels[index], mode="L").save(buffer, "PNG")
            target.write_bytes(buffer.getvalue())


def main() -> None:
    torch.use_deterministic_algorithms(True)
    pixels, labels = digits()
    odd, even = np.arange(len(labels)) % 2 == 1, np.arange(len(labels)) % 2 == 0
    WEIGHTS.mkdir(exist_ok=True)
    for kind in ARCHITECTURES:
        model = train(kind, pixels[odd], labels[odd])
        torch.save(model.state_dict(), WEIGHTS / f"{kind}.pt")
        with torch.no_grad():
            test = torch.from_numpy(((pixels[even].astype(np.float32) / 255 - MEAN) / STD)[:, None])
            accuracy = (model(test).argmax(1).numpy() == labels[even]).mean()
        print(f"{kind}: held-out accuracy {accuracy:.3f} on {even.sum()} digits never trained on")
    write_data(pixels[even], labels[even])
    print(f"wrote {sum(1 for _ in DATA.rglob('*.png'))} PNGs to {DATA}")


if __name__ == "__main__":
    main()
