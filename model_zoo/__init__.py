"""Registered models. Each entry is one small module; registering imports nothing heavy."""
from deploytool.registry import ZOO

ZOO.register("digits", "model_zoo.digits.entry:ENTRY", task="image classification (10 digits)",
             inputs="x: 1x1x8x8 float32", targets=("android", "ios"))
