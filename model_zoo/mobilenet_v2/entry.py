"""Zoo entry `mobilenet_v2`: torchvision's mobilenet_v2 at 128x128, parity-checked on real photo crops.
fp32 only for now: its int8 .pte mismatches (see the recipe)."""
from model_zoo.vision import int8_mismatch, torchvision_entry

ENTRY = torchvision_entry("mobilenet_v2", recipe=int8_mismatch(sqnr_db=7.5, top1_agreement=0.29, vs_reference_db=9.7))
