"""Zoo entry `digits`: the demo CNN, calibrated and checked on digits it never saw in training."""
from deploytool.config import Color, InputSpec, Preprocess
from deploytool.zoo import ZooEntry
from model_zoo.digits.images import write_digit_images
from model_zoo.digits.model import MEAN, STD, DigitsCNN, build

ENTRY = ZooEntry(
    name="digits",
    build=build,
    architecture=DigitsCNN,
    inputs=(InputSpec("x", (1, 1, 8, 8)),),
    preprocess=Preprocess(color=Color.L, mean=(MEAN,), std=(STD,)),
    labels=tuple(str(d) for d in range(10)),
    write_data=write_digit_images,
    data_note="scikit-learn's bundled 8x8 digits: the even-indexed half, never used in training, as PNGs",
    weights_note="trained in the repo: model_zoo/digits/train.py -> digits_cnn.pt (odd-indexed digits)",
)
