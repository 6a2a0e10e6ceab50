"""Zoo entry `resnet18`: torchvision's resnet18 at 128x128, parity-checked on real photo crops.
fp32 only for now: its int8 .pte mismatches (see the recipe)."""
from model_zoo.vision import int8_mismatch, torchvision_entry

ENTRY = torchvision_entry("resnet18", recipe=int8_mismatch(sqnr_db=24.6, top1_agreement=0.67))
