"""A flatbuffer reader driven by the .fbs schemas executorch ships: it decodes only the fields asked for, with no
flatc process and no torch import."""
from __future__ import annotations

import functools
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCALARS = {"bool": "?", "byte": "b", "ubyte": "B", "int8": "b", "uint8": "B", "short": "h", "ushort": "H",
            "int16": "h", "uint16": "H", "int": "i", "uint": "I", "int32": "i", "uint32": "I", "long": "q",
            "ulong": "Q", "int64": "q", "uint64": "Q", "float": "f", "float32": "f", "double": "d", "float64": "d"}


def u32(data, offset: int) -> int:
    """The little-endian uint32 at `offset`: a flatbuffer's offsets and lengths."""
    return struct.unpack_from("<I", data, offset)[0]


@dataclass
class Schema:
    """The tables, unions and enums of a set of .fbs files, as `read_schema` parses them."""

    tables: dict[str, dict[str, tuple[int, str]]]  # table -> field -> (vtable slot, type); a union: 2 slots
    unions: dict[str, list[tuple[str, str]]]  # union -> [(member name, its table)], type 1 = first
    enums: dict[str, tuple[str, dict[int, str]]]  # enum -> (scalar type, value -> name)


@functools.lru_cache(maxsize=None)
def read_schema(*relative: str) -> Schema:
    """Tables, unions and enums of executorch's .fbs files, found next to its package without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("executorch")
    if spec is None or not spec.submodule_search_locations:
        from deploytool.errors import MissingDependencyError

        raise MissingDependencyError("reading a .pte needs executorch's schemas: pip install executorch")
    root = Path(list(spec.submodule_search_locations)[0])
    text = "\n".join(re.sub(r"//[^\n]*", "", (root / name).read_text()) for name in relative)
    text = re.sub(r"\([^)]*\)", "", text)  # attributes: (deprecated), (force_align: 16)
    enums = {}
    for name, scalar, body in re.findall(r"\benum\s+(\w+)\s*:\s*(\w+)\s*\{(.*?)\}", text, re.S):
        members, value = {}, 0
        for member, explicit in re.findall(r"(\w+)\s*(?:=\s*(-?\d+))?\s*(?:,|$)", body.strip()):
            value = int(explicit) if explicit else value
            members[value] = member
            value += 1
        enums[name] = (scalar, members)
    unions = {name: [(m, t or m) for m, t in re.findall(r"(\w+)\s*(?::\s*(\w+))?\s*(?:,|$)", body.strip())]
              for name, body in re.findall(r"\bunion\s+(\w+)\s*\{(.*?)\}", text, re.S)}
    tables = {}
    for name, body in re.findall(r"\btable\s+(\w+)\s*\{(.*?)\}", text, re.S):
        fields, slot = {}, 0
        for field_name, field_type in re.findall(r"(\w+)\s*:\s*(\[\s*\w+\s*\]|\w+)\s*(?:=[^;]*)?;", body):
            field_type = field_type.replace(" ", "")
            if field_type in unions:
                fields[f"{field_name}_type"] = (slot, "ubyte")
                slot += 1
            fields[field_name] = (slot, field_type)
            slot += 1
        tables[name] = fields
    return Schema(tables, unions, enums)


@dataclass
class Flatbuffer:
    """A flatbuffer's bytes with the schema they are read by."""

    data: bytes
    schema: Schema


class Table:
    """One flatbuffer table, decoded field by field on demand. `kind` is the union member it was read as."""

    __slots__ = ("buffer", "position", "type", "kind")

    def __init__(self, buffer: Flatbuffer, position: int, type_: str, kind: str = ""):
        self.buffer, self.position, self.type, self.kind = buffer, position, type_, kind or type_

    def _field(self, name: str) -> tuple[int, str]:
        data = self.buffer.data
        slot, field_type = self.buffer.schema.tables[self.type].get(name, (-1, ""))
        if slot < 0:
            return 0, ""
        vtable = self.position - struct.unpack_from("<i", data, self.position)[0]
        entry = 4 + 2 * slot
        if entry >= struct.unpack_from("<H", data, vtable)[0]:
            return 0, field_type
        offset = struct.unpack_from("<H", data, vtable + entry)[0]
        return (self.position + offset if offset else 0), field_type

    def get(self, name: str, default: Any = None) -> Any:
        at, field_type = self._field(name)
        if not at:
            return default
        return self._decode(at, field_type, name)

    def _decode(self, at: int, field_type: str, name: str) -> Any:
        schema, data = self.buffer.schema, self.buffer.data
        if field_type in _SCALARS:
            return struct.unpack_from("<" + _SCALARS[field_type], data, at)[0]
        if field_type in schema.enums:
            return struct.unpack_from("<" + _SCALARS[schema.enums[field_type][0]], data, at)[0]
        target = at + u32(data, at)
        if field_type == "string":
            return bytes(data[target + 4:target + 4 + u32(data, target)]).decode("utf-8", "replace")
        if field_type in schema.unions:
            member = self.get(f"{name}_type", 0)
            members = schema.unions[field_type]
            if not 0 < member <= len(members):
                return None
            return Table(self.buffer, target, members[member - 1][1], members[member - 1][0])
        if field_type.startswith("["):
            element = field_type[1:-1]
            count, first = u32(data, target), target + 4
            if element in ("ubyte", "uint8"):
                return bytes(data[first:first + count])
            scalar = _SCALARS.get(schema.enums[element][0] if element in schema.enums else element)
            if scalar:
                return list(struct.unpack_from(f"<{count}{scalar}", data, first))
            places = [first + 4 * i + u32(data, first + 4 * i) for i in range(count)]
            if element == "string":
                return [bytes(data[p + 4:p + 4 + u32(data, p)]).decode("utf-8", "replace") for p in places]
            return [Table(self.buffer, p, element) for p in places]
        return Table(self.buffer, target, field_type)

    def to_json(self) -> dict[str, Any]:
        """Every present field, as flatc's JSON has it: enums by name, unions as `<field>_type` + `<field>`."""
        schema = self.buffer.schema
        out: dict[str, Any] = {}
        for name, (_, field_type) in schema.tables[self.type].items():
            at, _ = self._field(name)
            if not at:
                if field_type in _SCALARS or field_type in schema.enums:  # flatc writes defaults too
                    out[name] = _jsonable(0.0 if _SCALARS.get(field_type) in ("f", "d") else 0, field_type, schema)
                continue
            if name.endswith("_type") and name[:-5] in schema.tables[self.type] \
                    and schema.tables[self.type][name[:-5]][1] in schema.unions:
                members = schema.unions[schema.tables[self.type][name[:-5]][1]]
                member = self._decode(at, "ubyte", name)
                out[name] = members[member - 1][0] if 0 < member <= len(members) else "NONE"
                continue
            out[name] = _jsonable(self._decode(at, field_type, name), field_type, schema)
        return out


def _jsonable(value: Any, field_type: str, schema: Schema) -> Any:
    if isinstance(value, Table):
        return value.to_json()
    if field_type in schema.enums:
        return schema.enums[field_type][1].get(value, value)
    if isinstance(value, list):
        element = field_type[1:-1]
        return [_jsonable(item, element, schema) for item in value]
    return value
