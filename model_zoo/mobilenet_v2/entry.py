"""Zoo entry `mobilenet_v2`: torchvision's MobileNetV2 with its ImageNet weights (IMAGENET1K_V1), at 224x224,
calibrated and checked on real photos."""
from deploytool.zoo import Recipe
from model_zoo.imagenet import trained_entry
from model_zoo.weights import MOBILENET_V2

ENTRY = trained_entry("mobilenet_v2", weights=MOBILENET_V2, recipe=Recipe(holdout=0.4, known_failures=(
    ("server",
     "onnxruntime's static int8 (QDQ, U8U8, per-channel, minmax) is 11.6 dB from eager, 0.2 dB under its own QDQ "
     "math (11.9 dB), and keeps 86% of the 22 confident held-out predictions (-13.6 points, limit 3): the loss is"
     " onnxruntime's quantization of this model, not the CPU's kernels; the int8 .pte (dynamic XNNPACK) passes, "
     "and server has the fp32 model.onnx"),
    ("server/model.int8.pt2",
     "the X86InductorQuantizer program is 12.8 dB from eager (the .pt2 loses nothing to its kernels: 13.0 and "
     "12.8 dB in two builds), and its top-1 on the 22 labelled held-out photos swings from build to build between"
     " 100% and 91% (one photo is 4.5 points, limit 3): a verdict on the edge of the task budget"),)))
