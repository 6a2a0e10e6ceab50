"""Zoo entry `efficientnet_b0`: torchvision's efficientnet_b0 at 128x128, parity-checked on real photo crops.
fp32 only for now: its int8 .pte mismatches (see the recipe)."""
from model_zoo.vision import int8_mismatch, torchvision_entry

ENTRY = torchvision_entry("efficientnet_b0",
                          recipe=int8_mismatch(sqnr_db=5.9, top1_agreement=0.38, vs_reference_db=9.0))
