"""Shared makers of realistic calibration data for the corpus: token ids with padding, tones, log-mel-like frames,
images, and targets taken from eager's confident decisions. numpy only, apart from running the eager model."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

SAMPLES = 64  # 20% held out by default: about 13 held-out samples, above data.holdout_min (8)
MARGIN = 0.1  # a decision counts only where eager's top-1 leads its runner-up by this much probability (DESIGN.md)
UNDECIDED = -1  # target of a sample (or position) where eager did not decide: metrics skip it
RATE = 16_000  # audio sample rate


def tokens(rng: np.random.Generator, count: int, length: int, *, vocab: int, shortest: int = 6,
           cls: int | None = 1, sep: int | None = 2, pad: int = 0, first_word: int = 3) -> tuple[np.ndarray, ...]:
    """(input_ids, attention_mask), int64 [count, length]: Zipf-distributed words between [CLS] and [SEP], right
    padded with `pad`; the mask is 1 exactly where a token is."""
    ids = np.full((count, length), pad, np.int64)
    mask = np.zeros((count, length), np.int64)
    specials = (cls is not None) + (sep is not None)
    for row in range(count):
        size = int(rng.integers(shortest, length + 1))
        words = first_word + (rng.zipf(1.3, size - specials) - 1) % (vocab - first_word)
        sentence = ([cls] if cls is not None else []) + words.tolist() + ([sep] if sep is not None else [])
        ids[row, :size] = sentence
        mask[row, :size] = 1
    return ids, mask


def harmonic_tone(rng: np.random.Generator, f0: float, samples: int, *, harmonics: int = 5,
                  noise: float = 0.02) -> np.ndarray:
    """A harmonic tone at f0 Hz (partials 0.6**k, random phases) with a little white noise, peak about 0.5."""
    t = np.arange(samples) / RATE
    wave = sum(0.6 ** k * np.sin(2 * np.pi * (k + 1) * f0 * t + rng.uniform(0, 2 * np.pi))
               for k in range(harmonics) if (k + 1) * f0 < RATE / 2)
    wave = wave + noise * np.std(wave) * rng.standard_normal(samples)
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)


def log_mel_like(rng: np.random.Generator, frames: int, mels: int) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel-like frames [frames, mels] of a tone whose pitch glides, and its f0 per frame in Hz.

    Each partial is a bump on a log-frequency axis (60 Hz-8 kHz over the mel bins), with a slow amplitude
    envelope and a floor of noise at -8 (log of a small power), as a real log-mel spectrogram looks."""
    axis = np.geomspace(60.0, 8000.0, mels)
    start, end = rng.uniform(80.0, 600.0, 2)
    f0 = np.geomspace(start, end, frames)
    envelope = 0.5 + 0.5 * np.sin(np.linspace(0, np.pi, frames))
    power = np.zeros((frames, mels))
    for k in range(1, 7):
        centre = np.log2(k * f0)[:, None]
        power += 0.6 ** k * np.exp(-0.5 * ((np.log2(axis)[None] - centre) / 0.03) ** 2)
    power = envelope[:, None] * power + 1e-4 * rng.random((frames, mels))
    return np.log(power + 3e-4).astype(np.float32), f0


def images(rng: np.random.Generator, count: int, channels: int, size: int) -> np.ndarray:
    """Normalised images [count, channels, size, size]: smooth shapes (blurred blobs and edges) over N(0, 1)
    pixel noise, then standardised as ImageNet-normalised photos are (about mean 0, std 1)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((count, channels, size, size), np.float32)
    for i in range(count):
        picture = 0.3 * rng.standard_normal((channels, size, size))
        for _ in range(int(rng.integers(2, 6))):
            cy, cx, radius = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.3)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius ** 2))
            picture += rng.uniform(-2, 2, (channels, 1, 1)) * blob
        picture += rng.uniform(-1, 1) * (xx > rng.uniform(0.2, 0.8))  # an edge
        out[i] = (picture - picture.mean()) / picture.std()
    return out


def load_model(folder: Path):
    """`folder/model.py` imported as deploytool imports it (by path), after the torchvision fix deploytool's own
    install needs (a CPU-only torch cannot `import torchvision` otherwise, and transformers and timm import it)."""
    from deploytool.torchvision_compat import import_torchvision

    try:
        import_torchvision()
    except Exception:  # noqa: BLE001 - without torchvision, models that need it fail on their own import below
        pass
    name = f"corpus_{folder.name}_model"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, folder / "model.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def eager(folder: Path, arrays: dict[str, np.ndarray], *, output=None) -> np.ndarray:
    """Runs `folder/model.py:build()` on the samples (all at once) and returns one output as numpy: the first
    tensor, or the one `output(result)` picks out of a dict, tuple or ModelOutput."""
    import torch

    module = load_model(folder).build()
    with torch.no_grad():
        result = module(**{name: torch.from_numpy(a) for name, a in arrays.items()})
    picked = output(result) if output else (result[0] if isinstance(result, (tuple, list)) else result)
    return picked.detach().float().numpy()


def decided_top1(logits: np.ndarray, *, margin: float = MARGIN) -> np.ndarray:
    """eager's top-1 class along the last axis where its softmax leads the runner-up by `margin`, else UNDECIDED."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    ranked = np.sort(probabilities, axis=-1)
    decided = ranked[..., -1] - ranked[..., -2] >= margin
    return np.where(decided, logits.argmax(axis=-1), UNDECIDED).astype(np.int64)


def save_npz(folder: Path, file_name: str, **arrays: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name
    np.savez(path, **arrays)
    return path
