"""Project configuration: frozen dataclasses, read from deploytool.toml or [tool.deploytool].

Precedence, lowest first: defaults, the config file, flags. Unknown keys and wrong types are
`ConfigError`s that name the file and the field.
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from deploytool.errors import ConfigError, did_you_mean

CONFIG_FILE = "deploytool.toml"


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
        if self.calib_limit is not None and self.calib_limit < 1:
            raise ConfigError(f"data.calib_limit = {self.calib_limit}: must be at least 1")
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size = {self.batch_size}: must be at least 1")


@dataclass(frozen=True)
class QuantConfig:
    per_channel: bool = True  # per-channel weights keep depthwise convs accurate at no runtime cost


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
    # int8 PTQ on a CNN typically lands at 20-35 dB; under 15 dB predictions visibly change.
    int8: Thresholds = Thresholds(min_sqnr_db=15.0, min_cosine=0.98, min_top1_agreement=0.85)
    # Artifact vs its own quantized reference: only lowering differences (rounding), so much tighter.
    int8_vs_reference: Thresholds = Thresholds(min_sqnr_db=25.0)
    timeout_s: float = 300.0  # per artifact run in its runtime subprocess

    def for_precision(self, precision: Precision) -> Thresholds:
        return self.int8 if precision is Precision.INT8 else self.fp32


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
    parity: ParityConfig = ParityConfig()
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
        return _to_plain(self)


# --- reading -------------------------------------------------------------------------------------------


def find_config(start: Path) -> tuple[Path, dict[str, Any]] | None:
    """deploytool.toml in `start`, else [tool.deploytool] in pyproject.toml; None when neither exists."""
    own = start / CONFIG_FILE
    if own.is_file():
        return own, _read_toml(own)
    pyproject = start / "pyproject.toml"
    if pyproject.is_file():
        table = _read_toml(pyproject).get("tool", {}).get("deploytool")
        if table is not None:
            return pyproject, table
    return None


def load_config(start: Path | None = None, *, file: Path | None = None,
                overrides: dict[str, Any] | None = None,
                fallback: dict[str, Any] | None = None) -> ProjectConfig:
    """Build the config: defaults < `fallback` (a recorded earlier run) < config file < `overrides` (flags).

    >>> cfg = load_config(Path("."), overrides={"model": "zoo:digits"})
    """
    start = (start or Path.cwd()).resolve()
    found = (file.resolve(), _read_any(file)) if file else find_config(start)
    table: dict[str, Any] = {}
    source, base_dir = "defaults", start
    if fallback:
        table = _merge(table, fallback)
    if found:
        path, file_table = found
        table = _merge(table, file_table)
        source, base_dir = str(path), path.parent
    for dotted, value in (overrides or {}).items():
        if value is None or value == ():
            continue
        _set_dotted(table, dotted, value)
    return parse_config(table, source=source, base_dir=base_dir)


def parse_config(table: dict[str, Any], *, source: str = "<config>", base_dir: Path = Path(".")) -> ProjectConfig:
    config = _build(ProjectConfig, table, where="", source=source)
    return dataclasses.replace(config, base_dir=base_dir, source=source)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", hint="Fix the syntax at the line shown.") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _read_any(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist.")
    if path.suffix == ".json":
        return json.loads(path.read_text())
    table = _read_toml(path)
    return table.get("tool", {}).get("deploytool", table) if path.name == "pyproject.toml" else table


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _set_dotted(table: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        table = table.setdefault(part, {})
    table[leaf] = value


_INTERNAL_FIELDS = {"base_dir", "source"}


def _build(cls: type, table: Any, *, where: str, source: str) -> Any:
    """Instantiate dataclass `cls` from a TOML table, checking keys and types."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{where.rstrip('.')}] must be a table, got {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)} - _INTERNAL_FIELDS
    kwargs = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(f"{source}: unknown key '{where}{key}'. {did_you_mean(key, fields)}",
                              hint="Remove it or fix the spelling.")
        kwargs[key] = _convert(hints[key], value, where=f"{where}{key}", source=source)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}", hint=exc.hint) from None


def _convert(hint: Any, value: Any, *, where: str, source: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, where=where, source=source)
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else _build(hint, value, where=f"{where}.", source=source)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{where}' must be a list, got {value!r}")
        item_hint = args[0]
        if args[-1] is not Ellipsis and len(args) != len(value):
            raise ConfigError(f"{source}: '{where}' must have {len(args)} items, got {len(value)}")
        return tuple(_convert(item_hint, v, where=f"{where}[{i}]", source=source) for i, v in enumerate(value))
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            known = [m.value for m in hint]
            raise ConfigError(f"{source}: '{where}' = {value!r} is not valid. {did_you_mean(str(value), known)}") from None
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        raise ConfigError(f"{source}: '{where}' must be {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.name not in _INTERNAL_FIELDS}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_to_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
