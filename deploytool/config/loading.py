"""Reading the project configuration: deploytool.toml or [tool.deploytool] in pyproject.toml, [[models]] entries,
a recorded earlier run and flags, merged in that order into the dataclasses of config.schema.

Unknown keys and wrong types are `ConfigError`s that name the file (or the flag) and the field.

    >>> load_config(Path("."), overrides={"model": "zoo:digits"}).model
    'zoo:digits'
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import re
import tomllib
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any

from deploytool.config.schema import INTERNAL_FIELDS, ProjectConfig
from deploytool.errors import ConfigError, did_you_mean

CONFIG_FILE = "deploytool.toml"
MODELS_KEY = "models"  # [[models]]: one table per model, top-level keys are their defaults
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # safe in folder names, JUnit and test ids




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




def _build(cls: type, table: Any, *, where: str, source: str) -> Any:
    """Instantiate dataclass `cls` from a TOML table, checking keys and types."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{where.rstrip('.')}] must be a table, got {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)} - INTERNAL_FIELDS
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
    keys = {f.name for f in dataclasses.fields(cls)} - INTERNAL_FIELDS
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
        try:
            return float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise ConfigError(f"{source}: '{where}' = {str(value)[:20]}... ({len(str(value))} digits) is too large "
                              "for a number of this kind") from None
    if hint in (int, float, str, bool) and not (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        raise ConfigError(f"{source}: '{where}' must be {hint.__name__}, got {type(value).__name__} {value!r}")
    return value
