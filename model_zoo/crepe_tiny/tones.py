"""Synthetic harmonic tones of known f0, one normalised 1024-sample frame each: pitch data with free labels."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

from model_zoo.crepe_tiny.model import FRAME
from model_zoo.crepe_tiny.pitch import cents_of_frequency

RATE = 16_000
TONES = 96  # 48 held out at holdout 0.5: one flipped tone is ~2 points of accuracy
LOWEST_HZ, HIGHEST_HZ = 60.0, 1000.0  # voice and most instruments; CREPE's bins span 31.7-2006 Hz
HARMONICS = 6  # amplitude 0.6**k: a bright tone whose fundamental is still the strongest partial
NOISE = 0.02  # white noise, relative to the tone's RMS (about 34 dB SNR)
SEED = 20180401
NAME = re.compile(r"tone_\d+_(\d+\.\d+)Hz\.npy")


def tone(f0: float, rng: np.random.Generator) -> np.ndarray:
    """One frame of a harmonic tone at `f0` Hz with random partial phases and a little noise, normalised per
    frame (mean 0, std 1) as torchcrepe's preprocess does before the model: float32 [1, 1024]."""
    t = np.arange(FRAME) / RATE
    partials = [k for k in range(1, HARMONICS + 1) if k * f0 < RATE / 2]
    wave = sum(0.6 ** (k - 1) * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) for k in partials)
    wave = wave + NOISE * np.std(wave) * rng.standard_normal(FRAME)
    wave = wave - wave.mean()
    return (wave / max(wave.std(ddof=1), 1e-10)).astype(np.float32)[None]


def frequencies() -> np.ndarray:
    return np.geomspace(LOWEST_HZ, HIGHEST_HZ, TONES)


def write_tones(folder: Path) -> Path:
    """`folder/tone_NNN_FFFF.FFHz.npy`, each float32 [1, 1024] (one sample); the name carries the true f0."""
    rng = np.random.default_rng(SEED)
    folder.mkdir(parents=True, exist_ok=True)
    for index, f0 in enumerate(frequencies()):
        frame = tone(float(f0), rng)  # drawn for every tone, so each tone's noise does not depend on the folder
        target = folder / f"tone_{index:03d}_{f0:07.2f}Hz.npy"
        if not target.exists():
            np.save(target, frame)
    return folder


def label_of(ref) -> float | None:
    """The true pitch in cents of a sample written by `write_tones`, read from its file name."""
    match = NAME.fullmatch(ref.path.name)
    return cents_of_frequency(float(match.group(1))) if match else None


if __name__ == "__main__":
    out = write_tones(Path(sys.argv[1] if len(sys.argv) > 1 else "tones"))
    print(f"wrote {sum(1 for _ in out.glob('*.npy'))} tones to {out}", file=sys.stderr)
