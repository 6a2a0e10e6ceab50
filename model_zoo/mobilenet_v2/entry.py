"""Zoo entry `mobilenet_v2`: torchvision's MobileNetV2 with its ImageNet weights (IMAGENET1K_V1), at 224x224,
calibrated and checked on real photos."""
from model_zoo.imagenet import trained_entry
from model_zoo.weights import MOBILENET_V2

ENTRY = trained_entry("mobilenet_v2", weights=MOBILENET_V2)
