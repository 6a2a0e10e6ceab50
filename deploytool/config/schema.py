"""The project configuration's shape: frozen dataclasses and enums, each default with the reason for it.

Values are validated in `__post_init__` with a `ConfigError`; reading them from files is config.loading's.

    >>> QuantConfig(keep_fp32=("classifier",)).observer
    <Observer.HISTOGRAM: 'histogram'>
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from deploytool.errors import ConfigError, did_you_mean



class Precision(str, Enum):
    FP32 = "fp32"
    INT8 = "int8"


class Layout(str, Enum):
    NCHW = "NCHW"
    NHWC = "NHWC"


class Color(str, Enum):
    RGB = "RGB"
    BGR = "BGR"
    L = "L"  # one grayscale channel


DTYPES = ("float32", "float16", "int64", "int32", "uint8", "bool")
MAX_INPUT_ELEMENTS = 2 ** 31  # torch indexes a tensor's elements with int64, but 8 GiB of float32 per input is absurd
MAX_TIMEOUT_S = 7 * 24 * 3600.0  # a week: past this a number of seconds is a typo, and it overflows the timers


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"inputs '{self.name}': unknown dtype '{self.dtype}'. {did_you_mean(self.dtype, DTYPES)}")
        if not self.shape or any(d < 1 for d in self.shape):
            raise ConfigError(f"inputs '{self.name}': shape {list(self.shape)} must be non-empty positive sizes, "
                              "batch first, e.g. [1, 3, 224, 224]")
        if math.prod(self.shape) > MAX_INPUT_ELEMENTS:
            raise ConfigError(f"inputs '{self.name}': shape {list(self.shape)} is {math.prod(self.shape):.3g} values, "
                              f"more than any model input deploytool can hold ({MAX_INPUT_ELEMENTS:.3g})",
                              hint="Check the shape for a typo; sizes are batch first, e.g. [1, 3, 224, 224].")


@dataclass(frozen=True)
class DynamicDim:
    """An axis of one input whose length varies between samples (a sequence, a clip), up to `max`: every
    artifact takes any length up to it (ExecuTorch's bounded dynamic shapes, ONNX and AOTInductor dynamic axes)."""

    input: str  # the forward() argument
    axis: int  # of the model input, batch first: input_ids [1, T] varies on axis 1
    max: int  # the bound: the .pte plans its memory for it

    def __post_init__(self) -> None:
        if self.axis < 1:
            raise ConfigError(f"dynamic_dims '{self.input}': axis {self.axis} must be 1 or more (axis 0 is the batch; "
                              "dynamic_batch = true makes that one dynamic)")
        if not 2 <= self.max <= MAX_INPUT_ELEMENTS:
            raise ConfigError(f"dynamic_dims '{self.input}': max {self.max} must be at least 2, e.g. 512")


@dataclass(frozen=True)
class Preprocess:
    """How an image file becomes an input tensor (the same steps the demo apps repeat)."""

    resize: int | None = None  # shorter side, bilinear; None keeps the file's size
    center_crop: tuple[int, int] | None = None  # [height, width]
    color: Color = Color.RGB
    scale: float = 1 / 255  # pixel value -> [0, 1]
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: Layout = Layout.NCHW

    def __post_init__(self) -> None:
        if any(s == 0 for s in self.std):
            raise ConfigError("preprocess.std: a standard deviation of 0 divides by zero; use 1.0 for 'no scaling'")
        channels = 1 if self.color is Color.L else 3
        for name in ("mean", "std"):
            if len(getattr(self, name)) not in (1, channels):
                raise ConfigError(f"preprocess.{name}: {len(getattr(self, name))} values for {channels} channel(s) "
                                  f"(color = {self.color.value}); give 1 or {channels}")


IMAGENET = Preprocess(resize=256, center_crop=(224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


@dataclass(frozen=True)
class DataConfig:
    calib: str | None = None  # a folder or file; "random" must be asked for explicitly
    calib_limit: int | None = 256  # enough for stable int8 ranges on CNNs; more mostly costs time
    holdout: float = 0.2  # share of samples kept out of calibration, used for parity
    holdout_min: int = 8  # floor so tiny datasets still get a meaningful parity check
    batch_size: int = 32  # calibration batch; batching is what makes calibration cheap

    def __post_init__(self) -> None:
        if not 0 < self.holdout < 1:
            raise ConfigError(f"data.holdout = {self.holdout}: must be between 0 and 1 (e.g. 0.2)")
        if self.holdout_min < 1:
            raise ConfigError(f"data.holdout_min = {self.holdout_min}: at least 1 sample must be held out, or parity "
                              "has nothing to run on (e.g. 8)")
        if self.calib_limit is not None and self.calib_limit < 1:
            raise ConfigError(f"data.calib_limit = {self.calib_limit}: must be at least 1")
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size = {self.batch_size}: must be at least 1")


class Observer(str, Enum):
    """How calibration picks each activation's int8 range (torchao PT2E observers)."""

    MINMAX = "minmax"
    MOVING_AVERAGE = "moving-average"
    HISTOGRAM = "histogram"
    PERCENTILE = "percentile"


class Activations(str, Enum):
    """How activations are quantized for the .pte (XNNPACK int8)."""

    AUTO = "auto"  # search: static first, then dynamic int8 when static misses the budget
    STATIC = "static"  # ranges fixed by calibration: the fastest kernels
    DYNAMIC = "dynamic"  # ranges measured per inference; int8 weights all the same


class OnnxCalibration(str, Enum):
    """onnxruntime.quantization calibration methods for the int8 ONNX model."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class ScriptCapture(str, Enum):
    """How the TorchScript formats (.pt, .ptl) capture the model."""

    TRACE = "trace"
    SCRIPT = "script"


@dataclass(frozen=True)
class QuantConfig:
    per_channel: bool = True  # per-channel weights keep depthwise convs accurate at no runtime cost
    observer: Observer = Observer.HISTOGRAM  # XNNPACK's own default: searches the clipping range with least error
    symmetric_activations: bool = False  # affine uses all 256 levels for one-signed (post-ReLU) activations
    percentile: float = 99.99  # observer = percentile: clip the rarest 0.01% of values, which dominate minmax
    keep_fp32: tuple[str, ...] = ()  # eager module paths, globs (classifier.*) or type:Name left unquantized
    # Trained MobileNetV2: static int8 14.7 dB, dynamic 25.3 dB for ~15% more latency; let the budget choose.
    activations: Activations = Activations.AUTO
    # The search's budget when none is set: 5 dB above the 15 dB verdict, so other samples still pass.
    target_sqnr_db: float = 20.0
    # Budgets for the automatic fp32 fallback; None leaves every supported layer in int8.
    min_sqnr_db: float | None = None
    min_top1_agreement: float | None = None
    max_accuracy_drop: float | None = None  # top-1 accuracy points vs eager fp32, on labelled held-out data
    max_fp32_layers: int = 8  # past a handful of fp32 layers the int8 model loses its size and speed edge
    onnx_calibration: OnnxCalibration = OnnxCalibration.MINMAX  # exact observed ranges: fastest, no clipping guess
    # The user's own quality measure, file.py:fn or pkg.module:fn with fn(outputs, targets) -> share in [0, 1]; it
    # decides int8 verdicts and the search, as a zoo entry's task metric does. None: top-1 where there are targets.
    metric: str | None = None
    max_metric_drop: float = 1.0  # points (share x 100) of that metric an int8 artifact may lose: one in a hundred

    def __post_init__(self) -> None:
        if not 50 < self.percentile <= 100:
            raise ConfigError(f"quantize.percentile = {self.percentile}: must be in (50, 100], e.g. 99.99")
        if self.max_fp32_layers < 1:
            raise ConfigError(f"quantize.max_fp32_layers = {self.max_fp32_layers}: must be at least 1")
        if self.min_top1_agreement is not None and not 0 <= self.min_top1_agreement <= 1:
            raise ConfigError(f"quantize.min_top1_agreement = {self.min_top1_agreement}: a share in [0, 1], e.g. 0.97")
        if self.max_accuracy_drop is not None and self.max_accuracy_drop < 0:
            raise ConfigError(f"quantize.max_accuracy_drop = {self.max_accuracy_drop}: points, at least 0, e.g. 1.0")
        if not 0 <= self.max_metric_drop <= 100:
            raise ConfigError(f"quantize.max_metric_drop = {self.max_metric_drop}: points in [0, 100], e.g. 1.0")
        if self.metric is not None and ":" not in self.metric:
            raise ConfigError(f"quantize.metric = {self.metric!r}: name a function, e.g. metric.py:pitch_accuracy "
                              "or mypkg.metrics:accuracy")

    @property
    def has_budget(self) -> bool:
        return any(v is not None for v in (self.min_sqnr_db, self.min_top1_agreement, self.max_accuracy_drop))


@dataclass(frozen=True)
class Thresholds:
    """Parity checks against eager fp32; None switches a check off."""

    min_sqnr_db: float | None = None
    min_cosine: float | None = None
    min_top1_agreement: float | None = None
    max_abs_rel: float | None = None  # max abs error divided by the eager output's range


@dataclass(frozen=True)
class ParityConfig:
    # fp32 lowering should be numerically transparent: 1e-4 of the output range, SQNR far above int8.
    fp32: Thresholds = Thresholds(min_sqnr_db=40.0, min_cosine=0.9999, min_top1_agreement=0.99, max_abs_rel=1e-4)
    # Trained MobileNetV2 on real photos: static int8 at 14.7 dB flips 3 of 36 decisive predictions, dynamic
    # int8 at 25 dB flips none; under 15 dB predictions visibly change. Top-1 counts decisive samples only and
    # fails only when its 95% interval lies below 0.85 (deploytool.parity).
    int8: Thresholds = Thresholds(min_sqnr_db=15.0, min_cosine=0.98, min_top1_agreement=0.85)
    # int8 artifact vs the program it was lowered from, as SQNR lost against eager: a correct XNNPACK lowering of
    # the trained MobileNetV2 lands within 0.5 dB of its PT2E program; a wrong dim order costs 1.7 dB.
    max_lowering_loss_db: float = 1.0
    # With labels (or a zoo entry's task metric) the task decides for int8: one flip in 36 is 2.8 points, two fail.
    max_accuracy_drop: float = 3.0
    timeout_s: float = 300.0  # per artifact run in its runtime subprocess

    def __post_init__(self) -> None:
        if not 0 < self.timeout_s <= MAX_TIMEOUT_S:  # NaN fails this too
            raise ConfigError(f"parity.timeout_s = {self.timeout_s}: seconds per artifact run, more than 0 and at "
                              f"most {MAX_TIMEOUT_S:.0f} (a week), e.g. 300")

    def for_precision(self, precision: Precision) -> Thresholds:
        return self.int8 if precision is Precision.INT8 else self.fp32


@dataclass(frozen=True)
class BaselineConfig:
    """How far each metric may fall behind deploytool.baseline.json before `deploytool check` fails."""

    sqnr_db: float = 1.0  # dB; reruns on one machine agree to 0.01 dB, so a 1 dB drop is a real change
    top1_agreement: float = 0.01  # share of held-out samples: one flipped prediction in a hundred
    accuracy: float = 0.01  # top-1 accuracy on labelled held-out samples, as a share (1 point)
    size_growth: float = 0.05  # relative growth of the artifact file; weights alone do not grow by 5%
    delegated_share: float = 0.0  # any op leaving the delegate runs on slow portable kernels: always a regression

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            if getattr(self, item.name) < 0:
                raise ConfigError(f"baseline.{item.name} = {getattr(self, item.name)}: a tolerance, at least 0")


@dataclass(frozen=True)
class ProjectConfig:
    model: str | None = None  # zoo:NAME, torchvision:NAME, pkg.mod:factory, file.py:factory, or a .pt2
    weights: str | None = None  # local state_dict / checkpoint for the model
    trust_checkpoint: bool = False  # allow pickle in checkpoints (runs code from the file)
    inputs: tuple[InputSpec, ...] = ()  # empty: from the zoo entry or the first calibration sample
    preprocess: Preprocess | None = None  # None: the zoo/torchvision default, else plain [0, 1] scaling
    labels: tuple[str, ...] = ()
    data: DataConfig = DataConfig()
    quantize: QuantConfig = QuantConfig()
    targets: tuple[str, ...] = ("android",)
    precision: Precision | None = None  # None: int8 when a quantized program exists, else fp32
    dynamic_batch: bool = False  # server formats (onnx, torchscript, aoti) take any batch; off: batch 1 like mobile
    dynamic_dims: tuple[DynamicDim, ...] = ()  # axes whose length varies between samples, each with its bound
    torchscript_capture: ScriptCapture = ScriptCapture.TRACE  # trace handles any forward() without data-dependent ifs
    parity: ParityConfig = ParityConfig()
    name: str | None = None  # a [[models]] entry's name: in check tables, JUnit, test ids and <output>/<name>
    baseline: BaselineConfig = BaselineConfig()  # tolerances against the committed deploytool.baseline.json
    output: str = "build/deploytool"
    base_dir: Path = field(default=Path("."), compare=False)  # relative paths resolve against this
    source: str = field(default="defaults", compare=False)  # where the values came from, for messages

    def path(self, value: str) -> Path:
        """A path from the config, resolved relative to the config file's folder."""
        return (self.base_dir / value).resolve()

    @property
    def output_dir(self) -> Path:
        return self.path(self.output)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)


INTERNAL_FIELDS = {"base_dir", "source"}  # ProjectConfig fields set by loading: never read from a file or written


def to_plain(value: Any) -> Any:
    """A config value as TOML/JSON-ready data: dataclasses become dicts (without their internal fields), enums
    their CLI strings, tuples lists, paths strings. What `to_dict`, cache keys and job specs are made of.

    >>> to_plain(QuantConfig(keep_fp32=("classifier",)))["keep_fp32"], to_plain(QuantConfig())["observer"]
    (['classifier'], 'histogram')
    """
    if dataclasses.is_dataclass(value):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.name not in INTERNAL_FIELDS}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [to_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
