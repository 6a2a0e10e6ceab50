"""Zoo entry `mobilenet_v3_small`: torchvision's mobilenet_v3_small at 128x128, parity-checked on real photo
crops. fp32 only for now: its int8 .pte mismatches (see the recipe)."""
from model_zoo.vision import int8_mismatch, torchvision_entry

ENTRY = torchvision_entry("mobilenet_v3_small",
                          recipe=int8_mismatch(sqnr_db=11.8, top1_agreement=0.57, vs_reference_db=18.6))
