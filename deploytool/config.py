"""Project configuration: frozen dataclasses, read from deploytool.toml or [tool.deploytool].

Precedence, lowest first: defaults, the config file, flags. Unknown keys and wrong types are
`ConfigError`s that name the file and the field.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from deploytool.errors import ConfigError, did_you_mean

CONFIG_FILE = "deploytool.toml"
MODELS_KEY = "models"  # [[models]]: one table per model, top-level keys are their defaults
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # safe in folder names, JUnit and test ids


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

    def __post_init__(self) -> None:
        if not 50 < self.percentile <= 100:
            raise ConfigError(f"quantize.percentile = {self.percentile}: must be in (50, 100], e.g. 99.99")
        if self.max_fp32_layers < 1:
            raise ConfigError(f"quantize.max_fp32_layers = {self.max_fp32_layers}: must be at least 1")
        if self.min_top1_agreement is not None and not 0 <= self.min_top1_agreement <= 1:
            raise ConfigError(f"quantize.min_top1_agreement = {self.min_top1_agreement}: a share in [0, 1], e.g. 0.97")
        if self.max_accuracy_drop is not None and self.max_accuracy_drop < 0:
            raise ConfigError(f"quantize.max_accuracy_drop = {self.max_accuracy_drop}: points, at least 0, e.g. 1.0")

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
                overrides: dict[str, Any] | None = None, override_names: dict[str, str] | None = None,
                fallback: dict[str, Any] | None = None) -> ProjectConfig:
    """Build the config: defaults < `fallback` (a recorded earlier run) < config file < `overrides` (flags).

    An invalid value is reported as coming from where it was set: the file, or the override, named by
    `override_names` (config key -> flag, e.g. {"data.holdout": "--holdout"}).

    >>> cfg = load_config(Path("."), overrides={"model": "zoo:digits"})
    """
    start = (start or Path.cwd()).resolve()
    found = (file.resolve(), _read_any(file)) if file else find_config(start)
    layers = [(RECORDED_RUN, fallback)] if fallback else []
    source, base_dir = "defaults", start
    if found:
        path, file_table = found
        layers.append((str(path), file_table))
        source, base_dir = str(path), path.parent
    layers += _override_layers(overrides, override_names)
    return _parse_layers(layers, source=source, base_dir=base_dir)


def load_projects(start: Path | None = None, *, file: Path | None = None, overrides: dict[str, Any] | None = None,
                  override_names: dict[str, str] | None = None) -> list[ProjectConfig]:
    """Every model the config declares: one per [[models]] entry, else the single top-level model.

    Top-level keys are defaults for every entry; an entry's own keys win (tables merge key by key), flags win
    over both. Entry `name` writes into <output>/<name>. Without [[models]] this is `[load_config(...)]`.

    >>> [p.name for p in load_projects(Path("examples/model-repo"))]
    ['digitnet', 'digitmlp']
    """
    start = (start or Path.cwd()).resolve()
    found = (file.resolve(), _read_any(file)) if file else find_config(start)
    if not found or MODELS_KEY not in found[1]:
        return [load_config(start, file=file, overrides=overrides, override_names=override_names)]
    path, table = found
    entries = table[MODELS_KEY]
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{path}: 'models' must be a non-empty list of tables.",
                          hint='Write one [[models]] table per model, each with name = "..." and model = "...".')
    defaults = {key: value for key, value in table.items() if key != MODELS_KEY}
    projects: list[ProjectConfig] = []
    for number, entry in enumerate(entries, start=1):
        name = entry.get("name")
        if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
            raise ConfigError(f"{path}: [[models]] entry {number} needs name = \"...\" made of letters, digits, "
                              f"'-', '_' or '.', got {name!r}.", hint='e.g. name = "mobilenet"')
        if any(p.name == name for p in projects):
            raise ConfigError(f"{path}: two [[models]] entries are named '{name}'.", hint="Give each model its own name.")
        source = f"{path} [[models]] '{name}'"
        layers = [(source, _merge(defaults, entry)), *_override_layers(overrides, override_names)]
        config = _parse_layers(layers, source=source, base_dir=path.parent)
        projects.append(dataclasses.replace(config, output=f"{config.output}/{name}"))
    return projects


RECORDED_RUN = "the last `deploytool quantize` run recorded in the output folder"


def _override_layers(overrides: dict[str, Any] | None,
                     names: dict[str, str] | None) -> list[tuple[str, dict[str, Any]]]:
    """One (name, table) layer per given override; the name is its flag, as messages show it."""
    layers = []
    for dotted, value in (overrides or {}).items():
        if value is None or value == ():
            continue
        table: dict[str, Any] = {}
        _set_dotted(table, dotted, value)
        layers.append(((names or {}).get(dotted, "overrides"), table))
    return layers


def _parse_layers(layers: list[tuple[str, dict[str, Any]]], *, source: str, base_dir: Path) -> ProjectConfig:
    """Merge the layers, lowest first, and parse. An invalid result is reported by the first layer that brings
    the same error, with its own name: `--holdout: data.holdout = 1.5: ...`, or the config file's path."""
    table: dict[str, Any] = {}
    for _, layer in layers:
        table = _merge(table, layer)
    try:
        return parse_config(table, source=source, base_dir=base_dir)
    except ConfigError as error:
        problem = error.message.removeprefix(f"{source}: ")
        table = {}
        for name, layer in layers:
            table = _merge(table, layer)
            try:
                parse_config(table, source=name, base_dir=base_dir)
            except ConfigError as own:
                if own.message.removeprefix(f"{name}: ") == problem:  # not one a later layer fixes
                    raise own from None
        raise


def parse_config(table: dict[str, Any], *, source: str = "<config>", base_dir: Path = Path(".")) -> ProjectConfig:
    if MODELS_KEY in table:
        raise ConfigError(f"{source} declares several models ([[models]]); this command works on one.",
                          hint="`deploytool check` runs every declared model; for one of them alone, point "
                               "--config at a file that declares only that model.")
    config = _build(ProjectConfig, table, where="", source=source)
    return dataclasses.replace(config, base_dir=base_dir, source=source)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", hint="Fix the syntax at the line shown.") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _read_any(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist.")
    if path.suffix == ".json":
        try:
            table = json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid JSON: {exc}", hint="Fix the syntax at the position shown.") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: the top level must be an object of settings, got {type(table).__name__}.")
        return table
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
            raise _unknown_key(key, value, fields, where=where, source=source)
        kwargs[key] = _convert(hints[key], value, where=f"{where}{key}", source=source)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}", hint=exc.hint) from None


def _unknown_key(key: str, value: Any, fields: set[str], *, where: str, source: str) -> ConfigError:
    """A key this table does not have. Where it is another table's key (calib_limit at the top level) or close
    to one, name that table: `Did you mean [data] calib_limit?`; else a close spelling in this table."""
    here = re.sub(r"\[\d+\]", "", where)  # inputs[0]. -> inputs.
    others = [(table, keys) for table, keys in _tables(ProjectConfig) if table != here]
    places, name = [table for table, keys in others if key in keys], key
    if not places and not difflib.get_close_matches(key, fields, n=1, cutoff=0.6):  # no close spelling here
        ratio, table, name = max(((difflib.SequenceMatcher(None, key, k).ratio(), table, k)
                                  for table, keys in others for k in keys), default=(0.0, "", key))
        places = [table] if ratio >= 0.8 else []
    message = f"{source}: unknown key '{where}{key}'. "
    if not places:
        return ConfigError(message + did_you_mean(key, fields), hint="Remove it or fix the spelling.")
    if places == [""]:
        return ConfigError(message + f"Did you mean top-level {name}? Known here: {', '.join(sorted(fields))}.",
                           hint=f"Move it above the first [table]: {name} = {_toml(value)}")
    prefix = "tool.deploytool." if "pyproject.toml" in source else ""
    headers = [f"[[{prefix}{t[:-1]}]]" if t in _LIST_TABLES else f"[{prefix}{t[:-1]}]" for t in places if t]
    tables = " or ".join(filter(None, (", ".join(headers[:-1]), headers[-1])))
    return ConfigError(message + f"Did you mean {tables} {name}? Known here: {', '.join(sorted(fields))}.",
                       hint=f"Move it: under {tables}, write {name} = {_toml(value)}")


_LIST_TABLES = {"inputs."}  # tuples of tables: [[inputs]]


def _tables(cls: type, prefix: str = "") -> list[tuple[str, set[str]]]:
    """Every table of the config with its keys: ('', top-level keys), ('data.', ...), ('parity.int8.', ...)."""
    hints = typing.get_type_hints(cls)
    keys = {f.name for f in dataclasses.fields(cls)} - _INTERNAL_FIELDS
    tables = [(prefix, keys)]
    for name in sorted(keys):
        inner = [a for a in (hints[name], *typing.get_args(hints[name])) if dataclasses.is_dataclass(a)]
        if inner:
            tables += _tables(inner[0], f"{prefix}{name}.")
    return tables


def _toml(value: Any) -> str:
    """A value as TOML writes it (strings, numbers, booleans and lists of them read the same as JSON)."""
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


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
            leaf = where.rpartition(".")[2]
            items = [value] * (len(args) if args[-1] is not Ellipsis else 1)  # center_crop = 224 -> [224, 224]
            hint = (f"Write one [[{leaf}]] table per item (double brackets)." if dataclasses.is_dataclass(args[0])
                    else f"Write a list: {leaf} = {_toml(items)}")
            raise ConfigError(f"{source}: '{where}' must be a list, got {value!r}", hint=hint)
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


def to_plain(value: Any) -> Any:
    """A config value as TOML/JSON-ready data: dataclasses become dicts (without their internal fields), enums
    their CLI strings, tuples lists, paths strings. What `to_dict`, cache keys and job specs are made of.

    >>> to_plain(QuantConfig(keep_fp32=("classifier",)))["keep_fp32"], to_plain(QuantConfig())["observer"]
    (['classifier'], 'histogram')
    """
    if dataclasses.is_dataclass(value):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.name not in _INTERNAL_FIELDS}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [to_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
