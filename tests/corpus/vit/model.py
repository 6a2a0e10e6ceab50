"""A small ViT from timm, created the way timm users do: `timm.create_model(name, pretrained=False, **overrides)`.

timm's VisionTransformer.forward takes an optional `attn_mask`, and its blocks pass optional arguments down.
"""
import timm
import torch

NUM_CLASSES = 10


def build():
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=64,  # 4x4 patches of 16: tiny, for the test
        depth=4,
        num_classes=NUM_CLASSES,
    )
    # Stands in for training: timm's head init (std 0.02) gives logits 0.3 apart, so no prediction is decided.
    torch.nn.init.normal_(model.head.weight, std=0.15)
    return model.eval()
