"""A 1-D conv pitch tracker in the style of CREPE-like salience models: one frame of a log-frequency spectrum
(251 bins of 30 cents) -> a Toeplitz conv along frequency (harmonic templates) -> LayerNorm over (channel, bin) ->
ReLU -> 1x1 mix -> 384 pitch bins of 20 cents with a sigmoid.

The weights stand in for training: each template sums the first five harmonics above a candidate f0, so the
argmax bin really is the pitch (random weights would make a pitch metric meaningless).
"""
import math

import torch
import torch.nn as nn

IN_BINS, IN_CENTS = 251, 30.0  # input: log-frequency spectrum, 30 cents a bin
OUT_BINS, OUT_CENTS = 384, 20.0  # output: pitch salience, 20 cents a bin (CREPE's resolution)
CENTS_OF_BIN0 = 1997.3794084376191  # both axes start at 31.7 Hz (cents above 10 Hz), as CREPE's bins do
KERNEL = 193  # wide enough to reach the 5th harmonic (93 bins above the fundamental)


class PitchNet(nn.Module):
    def __init__(self, channels: int = 8):
        super().__init__()
        self.toeplitz = nn.Conv1d(1, channels, KERNEL, padding=KERNEL // 2)
        self.norm = nn.LayerNorm([channels, IN_BINS])
        self.act = nn.ReLU()
        self.mix = nn.Conv1d(channels, 1, kernel_size=1)
        self.to_pitch = nn.Linear(IN_BINS, OUT_BINS)

    def forward(self, frames):
        x = self.toeplitz(frames.unsqueeze(1))  # [batch, channels, bins]
        x = self.act(self.norm(x))
        x = self.mix(x).squeeze(1)
        return torch.sigmoid(self.to_pitch(x))


@torch.no_grad()
def _harmonic_templates(model: PitchNet, generator: torch.Generator) -> None:
    conv = model.toeplitz
    conv.weight.normal_(0.0, 0.01, generator=generator)
    conv.bias.zero_()
    centre = KERNEL // 2
    for channel in range(conv.out_channels):
        decay = 0.55 + 0.3 * channel / conv.out_channels  # templates differ in how bright a tone they expect
        for k in range(1, 6):
            position = centre + 1200.0 * math.log2(k) / IN_CENTS
            low = int(position)
            for tap, share in ((low, 1 - (position - low)), (low + 1, position - low)):
                conv.weight[channel, 0, tap] += decay ** (k - 1) * share
    model.mix.weight.fill_(1.0 / conv.out_channels)
    model.mix.bias.zero_()
    # Input bin i sits at i * 30 cents, output bin o at o * 20 cents: linear interpolation, then a sharp sigmoid.
    weight = torch.zeros(OUT_BINS, IN_BINS)
    for o in range(OUT_BINS):
        position = o * OUT_CENTS / IN_CENTS
        low = min(int(position), IN_BINS - 1)
        high = min(low + 1, IN_BINS - 1)
        weight[o, low] += 1 - (position - low)
        weight[o, high] += position - low
    model.to_pitch.weight.copy_(2.0 * weight + 0.01 * torch.randn(weight.shape, generator=generator))
    model.to_pitch.bias.fill_(-5.0)


def build():
    torch.manual_seed(0)
    model = PitchNet()
    _harmonic_templates(model, torch.Generator().manual_seed(0))
    return model.eval()
