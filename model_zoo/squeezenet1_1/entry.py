"""Zoo entry `squeezenet1_1`: torchvision's SqueezeNet 1.1 at 128x128, parity-checked on real photo crops."""
from model_zoo.vision import torchvision_entry

ENTRY = torchvision_entry("squeezenet1_1", notes=(
    "SqueezeNet has no BatchNorm: without downloaded weights it runs on its seeded init alone",))
