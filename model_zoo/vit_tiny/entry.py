"""Zoo entry `vit_tiny`: torchvision's VisionTransformer (the class behind vit_b_16) at ViT-Tiny size.

vit_b_16 itself (86 M parameters, a 330 MB fp32 .pte) costs minutes to lower and calibrate on 2 cores, far
past the zoo's CI budget; the same architecture at 6 layers x 192 wide exercises the same ops.
"""
from model_zoo.vision import int8_mismatch, torchvision_entry


def vit_tiny(models):
    import torch

    vit = models.VisionTransformer(image_size=128, patch_size=16, num_layers=6, num_heads=3, hidden_dim=192,
                                   mlp_dim=768)
    # torchvision zero-initialises the head (it expects fine-tuning); untrained, every logit would be 0.
    torch.nn.init.trunc_normal_(vit.heads.head.weight, std=0.02)
    return vit


ENTRY = torchvision_entry("vit_tiny", make=vit_tiny, recipe=int8_mismatch(sqnr_db=7.9, top1_agreement=0.67,
                                                                          vs_reference_db=24.0), notes=(
    "ViT-Tiny size (6 layers, width 192, 3 heads, patch 16) of torchvision's VisionTransformer; vit_b_16 is "
    "the same code at 12 x 768 and is left out for CI time",
    "no BatchNorm to re-estimate: LayerNorm normalises per token, so the seeded init already has sane ranges"))
