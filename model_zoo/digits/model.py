"""A small CNN for scikit-learn's 8x8 digits: the embedded default model of `make demo`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

CHECKPOINT = Path(__file__).with_name("digits_cnn.pt")
# PNG pixel = round(value * 255 / 16); the model sees (pixel / 255 - 0.5) / 0.5, as from the image folder.
MEAN, STD = 0.5, 0.5


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def build() -> DigitsCNN:
    """The trained model, in eval mode."""
    model = DigitsCNN()
    model.load_state_dict(torch.load(CHECKPOINT, weights_only=True))
    return model.eval()


def digits_as_pixels() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as uint8 8x8 images (0-255) and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * 255 / 16).astype(np.uint8)
    return pixels, digits.target.astype(np.int64)


def split_indices(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Odd indices train the model; even ones are never seen in training and feed calibration and parity."""
    indices = np.arange(count)
    return indices[indices % 2 == 1], indices[indices % 2 == 0]


def normalise(pixels: np.ndarray) -> np.ndarray:
    return ((pixels.astype(np.float32) / 255 - MEAN) / STD)[:, None, :, :]
