"""An MTCNN R-Net-style face model written as users write it: PReLU, max-pool with ceil_mode, permute + flatten
before the dense layers, three heads. XNNPACK cannot lower the PReLU after the dense layer (2-D input), so the
whole-graph lowering fails in ChannelsLastTaggedReshapePass. Random weights: the failure is in the graph."""
import torch
from torch import nn


class RNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 28, 3), nn.PReLU(28), nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(28, 48, 3), nn.PReLU(48), nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(48, 64, 2), nn.PReLU(64),
        )
        self.dense = nn.Linear(64 * 3 * 3, 128)
        self.prelu = nn.PReLU(128)
        self.face = nn.Linear(128, 2)
        self.box = nn.Linear(128, 4)
        self.landmarks = nn.Linear(128, 10)

    def forward(self, x):
        x = self.features(x).permute(0, 3, 2, 1)  # MTCNN's weights come from Caffe, which flattens H and W swapped
        x = self.prelu(self.dense(x.reshape(x.shape[0], -1)))
        return torch.softmax(self.face(x), dim=1), self.box(x), self.landmarks(x)


def build():
    torch.manual_seed(0)
    return RNet().eval(), (torch.zeros(1, 3, 24, 24),)
