"""What the untrained torchvision entries share: a smaller input, real photo crops, and weights without a download.

No ImageNet weights can be downloaded here. Unless the user brings weights (`--weights`, or the file
torchvision would download, already in `torch.hub.get_dir()/checkpoints/`), each model is torchvision's
architecture with its seeded default initialisation and BatchNorm statistics re-estimated on real photo
crops, so activations have realistic ranges and int8 parity on it means something. Accuracy cannot be
measured without labels: these entries check parity (SQNR, top-1 agreement) only.
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploytool.config import IMAGENET, InputSpec, Preprocess
from deploytool.zoo import Recipe, ZooEntry

RESOLUTION = 128  # instead of 224: about 3x less compute per sample, which keeps the zoo tests within CI time
PREPROCESS = Preprocess(resize=RESOLUTION, center_crop=(RESOLUTION, RESOLUTION), mean=IMAGENET.mean, std=IMAGENET.std)
EVAL_PHOTOS = 48  # crops 0-47: calibration and held-out parity
STATS_PHOTOS = 60  # crops 48-107: BatchNorm statistics only, never calibrated or checked on
INIT_SEED = 0


Make = Callable[[Any], Any]  # torchvision.models -> module with default initialisation


def torchvision_entry(name: str, *, make: Make | None = None, notes: tuple[str, ...] = (),
                      recipe: Recipe = Recipe()) -> ZooEntry:
    """A zoo entry for torchvision model `name` at 128x128 on real photo crops.

    `make` builds a variant torchvision publishes no weights for (e.g. a smaller ViT); by default the
    entry is `torchvision.models.get_model(name)`.

    >>> ENTRY = torchvision_entry("resnet18")
    """
    make = make or (lambda models: models.get_model(name, weights=None))
    return ZooEntry(
        name=name,
        build=lambda: reestimated(make),
        architecture=lambda: architecture(make),
        cached_weights=(lambda: cached_weights(name)),
        inputs=(InputSpec("x", (1, 3, RESOLUTION, RESOLUTION)),),
        preprocess=PREPROCESS,
        labels=(),  # the classifier is untrained: its classes have no names
        write_data=write_eval_photos,
        data_note=f"{EVAL_PHOTOS} crops of scikit-learn's bundled sample photos (china.jpg, flower.jpg), "
                  "half calibrating, half held out",
        weights_note=f"torchvision default init (seed {INIT_SEED}), BatchNorm statistics re-estimated on "
                     f"{STATS_PHOTOS} other real photo crops; no ImageNet weights (no download here)",
        recipe=recipe,
        trained=False,
        notes=(f"input 1x3x{RESOLUTION}x{RESOLUTION} instead of 224x224, to keep CI time down",
               "no labels: parity only, no accuracy", *notes),
    )


def int8_mismatch(*, sqnr_db: float, top1_agreement: float, vs_reference_db: float | None = None) -> Recipe:
    """An fp32-only recipe for an untrained entry whose int8 .pte missed 15 dB against eager, with its numbers.

    `vs_reference_db` (the .pte against its own PT2E program) is kept as the measurement it was, not as a verdict:
    deploytool no longer judges that absolute number (deploytool.parity.lowering_check says why)."""
    reference = f"; {vs_reference_db:.1f} dB against its own PT2E program" if vs_reference_db is not None else ""
    return Recipe(precisions=("fp32",), fp32_only=(
        f"the int8 .pte measured SQNR {sqnr_db:.1f} dB, top-1 agreement {top1_agreement:.2f} against eager on the "
        f"held-out photos (int8 limit 15 dB){reference}. These weights are untrained (random init, BatchNorm "
        "re-estimated), so int8 parity on them proves nothing either way; the trained mobilenet_v2 entry is the "
        "int8 judge. Re-check with `deploytool zoo run NAME --precision int8`."))


def architecture(make: Make):
    """torchvision's module with its default initialisation, seeded so every build is the same."""
    import torch

    from deploytool.torchvision_compat import import_torchvision

    models = import_torchvision().models
    with torch.random.fork_rng():
        torch.manual_seed(INIT_SEED)
        return make(models).eval()


def reestimated(make: Make):
    """The architecture with BatchNorm statistics from real photos (crops never used for calibration)."""
    import numpy as np
    import torch

    from deploytool.batchnorm import reestimate_batchnorm
    from deploytool.data.images import load_image
    from model_zoo.photos import photo_crops

    module = architecture(make)
    with tempfile.TemporaryDirectory(prefix="zoo-bn-") as scratch:
        images = []
        for index, (crop_name, image) in enumerate(photo_crops(EVAL_PHOTOS + STATS_PHOTOS)):
            if index >= EVAL_PHOTOS:
                path = Path(scratch) / f"{crop_name}.jpg"
                image.save(path, quality=92)  # the same JPEG round trip as the calibration photos
                images.append(load_image(path, PREPROCESS))
    batch = torch.from_numpy(np.stack(images))
    reestimate_batchnorm(module, [batch[i:i + 20] for i in range(0, len(batch), 20)])
    return module.eval()


def cached_weights(name: str) -> Path | None:
    """The weights file torchvision would download for `name`, if it already sits in the local cache."""
    import torch

    from deploytool.torchvision_compat import import_torchvision

    models = import_torchvision().models
    if name not in models.list_models(module=models):
        return None  # a variant torchvision publishes no weights for
    weights = models.get_model_weights(name)
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.DEFAULT.url).name
    return path if path.is_file() else None


def write_eval_photos(folder: Path) -> Path:
    from model_zoo.photos import write_photos

    return write_photos(folder, EVAL_PHOTOS)
