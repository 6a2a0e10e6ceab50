"""The repo's models: factories deploytool loads as `digitnet/model.py:build_cnn` and `...:build_mlp`.

Each factory returns (module, example input), so deploytool knows the input shape [1, 1, 8, 8] without a config.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

WEIGHTS = Path(__file__).with_name("weights")
# PNG pixel p in 0..255 -> (p / 255 - 0.5) / 0.5: the same numbers deploytool.toml's [preprocess] produces.
MEAN, STD = 0.5, 0.5


class DigitCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class DigitMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


ARCHITECTURES = {"cnn": DigitCNN, "mlp": DigitMLP}


def _build(kind: str) -> tuple[nn.Module, torch.Tensor]:
    model = ARCHITECTURES[kind]()
    model.load_state_dict(torch.load(WEIGHTS / f"{kind}.pt", weights_only=True))
    return model.eval(), torch.zeros(1, 1, 8, 8)


def build_cnn() -> tuple[nn.Module, torch.Tensor]:
    return _build("cnn")


def build_mlp() -> tuple[nn.Module, torch.Tensor]:
    return _build("mlp")
