"""Registered models. Each entry is one small module; registering imports nothing heavy."""
from deploytool.registry import ZOO

ZOO.register("digits", "model_zoo.digits.entry:ENTRY", task="image classification (10 digits)",
             inputs="x: 1x1x8x8 float32", targets=("android", "ios"))
ZOO.register("text", "model_zoo.text.entry:ENTRY", task="text classification (4 topics), transformer encoder",
             inputs="ids: 1x24 int64", targets=("android", "ios"))
ZOO.register("crepe_tiny", "model_zoo.crepe_tiny.entry:ENTRY",
             task="pitch estimation (360 bins, 20 cents each), CREPE tiny", inputs="x: 1x1024 float32",
             targets=("android", "ios", "server"))

ZOO.register("mobilenet_v2", "model_zoo.mobilenet_v2.entry:ENTRY",
             task="image classification (ImageNet, 1000 classes), MobileNetV2, trained weights",
             inputs="x: 1x3x224x224 float32", targets=("android", "ios", "server"))

_VISION = {  # untrained torchvision architectures at a smaller input, on real photo crops (model_zoo/vision.py)
    "mobilenet_v3_small": "MobileNetV3-Small",
    "resnet18": "ResNet-18",
    "efficientnet_b0": "EfficientNet-B0",
    "shufflenet_v2_x1_0": "ShuffleNetV2 1.0x",
    "squeezenet1_1": "SqueezeNet 1.1",
    "regnet_x_400mf": "RegNetX-400MF",
    "vit_tiny": "ViT-Tiny/16 (torchvision VisionTransformer)",
}
for _name, _title in _VISION.items():
    ZOO.register(_name, f"model_zoo.{_name}.entry:ENTRY", task=f"image classification, {_title}",
                 inputs="x: 1x3x128x128 float32", targets=("android", "ios"))
