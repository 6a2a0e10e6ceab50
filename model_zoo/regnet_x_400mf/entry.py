"""Zoo entry `regnet_x_400mf`: torchvision's regnet_x_400mf at 128x128, parity-checked on real photo crops.
fp32 only for now: its int8 .pte mismatches (see the recipe)."""
from model_zoo.vision import int8_mismatch, torchvision_entry

ENTRY = torchvision_entry("regnet_x_400mf",
                          recipe=int8_mismatch(sqnr_db=12.8, top1_agreement=1.0, vs_reference_db=14.8))
