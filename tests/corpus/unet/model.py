"""A small UNet for 4-class segmentation, as in the usual PyTorch UNet repositories: DoubleConv blocks with
BatchNorm, max-pool down, F.interpolate (bilinear) up, torch.cat skips, a 1x1 conv to per-pixel class logits."""
import torch
import torch.nn as nn
import torch.nn.functional as F

CLASSES = ("background", "road", "building", "vegetation")


class DoubleConv(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

    def forward(self, x):
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x1, x2):
        x1 = F.interpolate(x1, size=x2.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x2, x1], dim=1))


class UNet(nn.Module):
    def __init__(self, n_channels=3, n_classes=len(CLASSES), base=16):
        super().__init__()
        self.inc = DoubleConv(n_channels, base)
        self.down1 = Down(base, base * 2)
        self.down2 = Down(base * 2, base * 4)
        self.down3 = Down(base * 4, base * 8)
        self.up1 = Up(base * 8 + base * 4, base * 4)
        self.up2 = Up(base * 4 + base * 2, base * 2)
        self.up3 = Up(base * 2 + base, base)
        self.outc = nn.Conv2d(base, n_classes, kernel_size=1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.up1(x4, x3)
        x = self.up2(x, x2)
        x = self.up3(x, x1)
        return self.outc(x)


@torch.no_grad()
def _estimate_batchnorm(model, batches=4):
    """Stands in for training: BatchNorm statistics from a few seeded batches (the default running statistics let
    activations shrink layer by layer), and a sharper output conv so most pixels get a decided class."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    generator = torch.Generator().manual_seed(1)
    for _ in range(batches):
        model(torch.randn(8, 3, 64, 64, generator=generator))
    nn.init.normal_(model.outc.weight, std=0.5)


def build():
    torch.manual_seed(0)
    model = UNet()
    _estimate_batchnorm(model)
    return model.eval()
