"""Zoo entry `shufflenet_v2_x1_0`: torchvision's shufflenet_v2_x1_0 at 128x128, parity-checked on real photo crops.
fp32 only for now: its int8 .pte mismatches (see the recipe)."""
from model_zoo.vision import int8_mismatch, torchvision_entry

ENTRY = torchvision_entry("shufflenet_v2_x1_0",
                          recipe=int8_mismatch(sqnr_db=10.5, top1_agreement=0.67, vs_reference_db=14.3))
