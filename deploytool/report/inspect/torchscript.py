""".pt / .ptl (TorchScript): the tensor records of the zip's pickles, read without torch by a pickle reader that
builds nothing, and the conv / linear / matmul ops of forward."""
from __future__ import annotations

import pickle
import re
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from deploytool.report.inspect.types import QDQ_WORDS, UNREAD, ComputeOp, Inspection, TensorInfo

STORAGE_DTYPES = {"Float": "float32", "Double": "float64", "Half": "float16", "BFloat16": "bfloat16",
                  "Long": "int64", "Int": "int32", "Short": "int16", "Char": "int8", "Byte": "uint8", "Bool": "bool",
                  "QInt8": "qint8", "QUInt8": "quint8", "QInt32": "qint32", "QUInt4x2": "qcint4"}
SCRIPT_COMPUTE = {"aten::_convolution": "conv", "aten::conv1d": "conv", "aten::conv2d": "conv",
                  "aten::conv3d": "conv", "aten::conv_transpose1d": "conv", "aten::conv_transpose2d": "conv",
                  "aten::linear": "linear", "aten::addmm": "linear", "aten::matmul": "matmul", "aten::mm": "matmul",
                  "aten::bmm": "matmul", "aten::baddbmm": "matmul", "aten::einsum": "matmul",
                  "aten::scaled_dot_product_attention": "attention", "prepacked::conv2d_clamp_run": "conv",
                  "prepacked::linear_clamp_run": "linear", "aten::lstm": "rnn", "aten::gru": "rnn",
                  "aten::rnn_tanh": "rnn", "aten::rnn_relu": "rnn", "aten::lstm_cell": "rnn", "aten::gru_cell": "rnn"}
SCRIPT_PICKLES = ("data.pkl", "constants.pkl")  # not traced_inputs.pkl: example inputs are not weights


class _Stored:
    """A tensor record in a TorchScript zip: its storage (dtype, key) and shape."""

    def __init__(self, storage: tuple[str, str], shape):
        self.storage, self.shape = storage, list(shape) if isinstance(shape, (list, tuple)) else []


class _Stub:
    """Any class a TorchScript pickle names: keeps its state, runs nothing."""

    def __init__(self, *args, **kwargs):
        self._args = args

    def __setstate__(self, state):
        self._state = state


class _ScriptUnpickler(pickle.Unpickler):
    """Reads a TorchScript pickle without torch: tensors become _Stored records, every other class a _Stub."""

    def __init__(self, file, folder: str):
        super().__init__(file)
        self.folder = folder

    def find_class(self, module: str, name: str):
        if name in ("_rebuild_tensor_v2", "_rebuild_tensor", "_rebuild_qtensor", "_rebuild_sparse_tensor"):
            return lambda storage, offset=0, size=(), *rest: _Stored(storage, size)
        if module == "collections" and name == "OrderedDict":
            return dict
        if module == "builtins" and name in ("set", "frozenset", "list", "tuple", "dict", "slice", "complex"):
            import builtins

            return getattr(builtins, name)
        return type(name, (_Stub,), {"script_module": module})

    def persistent_load(self, pid):
        kind, storage_type, key = pid[0], pid[1], pid[2]
        dtype_name_ = getattr(storage_type, "__name__", str(storage_type)).removesuffix("Storage")
        if kind != "storage":
            return None
        return (STORAGE_DTYPES.get(dtype_name_, dtype_name_.lower() or "uint8"), f"{self.folder}/{key}")


def inspect_torchscript(path: Path, fmt: str = "torchscript") -> Inspection:
    """A TorchScript .pt or .ptl: every tensor record of its data and constants pickles, sized by the zip entry
    that holds its storage; the conv / linear / matmul ops of forward, counted as ops: a .ptl's bytecode, or a
    .pt's code/ with each submodule call expanded (torch.jit.load's inlined graph where that code cannot be
    followed)."""
    import io

    result = Inspection(path, fmt)
    with zipfile.ZipFile(path) as archive:
        sizes = {}
        for info in archive.infolist():
            parts = info.filename.split("/")
            if len(parts) >= 3:
                sizes[f"{parts[-2]}/{parts[-1]}"] = info.file_size
        seen: set[str] = set()
        module_tree = None
        for name in archive.namelist():
            if name.rsplit("/", 1)[-1] not in SCRIPT_PICKLES:
                continue
            folder = name.rsplit("/", 1)[-1].removesuffix(".pkl")
            try:
                root = _ScriptUnpickler(io.BytesIO(archive.read(name)), folder).load()
            except Exception as error:  # noqa: BLE001 - a pickle this reader cannot follow: say so, measure the rest
                result.notes.append(f"{UNREAD} {name} ({type(error).__name__}: {error})")
                continue
            module_tree = root if folder == "data" else module_tree
            for label, record in _tensor_records(root, "" if folder == "data" else "constant"):
                dtype, key = record.storage
                if key in seen:
                    continue  # a view of a storage already counted
                seen.add(key)
                result.tensors.append(TensorInfo(label, record.shape, dtype, True, sizes.get(key)))
        bytecode = next((n for n in archive.namelist() if n.endswith("/bytecode.pkl")), None)
        if bytecode:
            _bytecode_compute(archive.read(bytecode), result)
        followed = bool(bytecode) or _script_code_compute(archive, module_tree, result)
    if not followed:
        _script_graph_compute(path, result)
    result.tensors.sort(key=lambda t: t.bytes, reverse=True)
    result.qdq_boundaries = sum(n for op, n in result.not_delegated.items() if any(w in op for w in QDQ_WORDS))
    return result


def inspect_ptl(path: Path) -> Inspection:
    return inspect_torchscript(path, "ptl")


def _tensor_records(node, prefix: str, depth: int = 0):
    """(dotted name, _Stored) for every tensor under a module object: its attributes, lists and states."""
    if depth > 64:
        return
    if isinstance(node, _Stored):
        yield prefix or "tensor", node
    elif isinstance(node, _Stub):  # a module's attributes (its pickled state), or a packed-params object's
        yield from _tensor_records(getattr(node, "_state", getattr(node, "_args", None)), prefix, depth + 1)
    elif isinstance(node, dict):
        for key, child in node.items():
            yield from _tensor_records(child, f"{prefix}.{key}".strip("."), depth + 1)
    elif isinstance(node, (list, tuple)):
        for index, child in enumerate(node):
            yield from _tensor_records(child, f"{prefix}.{index}".strip(".") if len(node) > 1 else prefix, depth + 1)


def _bytecode_compute(blob: bytes, result: Inspection) -> None:
    """Ops of a .ptl's bytecode: each method's OP instructions, by operator name."""
    import io

    try:
        bytecode = _ScriptUnpickler(io.BytesIO(blob), "bytecode").load()
    except Exception:  # noqa: BLE001 - an unreadable bytecode: compute unknown, weights still measured
        result.notes.append("the .ptl's bytecode could not be read: its ops are not counted")
        return
    for method in bytecode[1:] if isinstance(bytecode, tuple) else ():
        if not (isinstance(method, tuple) and len(method) >= 2 and isinstance(method[1], tuple)):
            continue
        table = dict(item for item in method[1] if isinstance(item, tuple) and len(item) == 2)
        operators = table.get("operators", ())
        for instruction in table.get("instructions", ()):
            if instruction[0] != "OP" or instruction[1] >= len(operators):
                continue
            op = operators[instruction[1]][0]
            result.not_delegated[op] = result.not_delegated.get(op, 0) + 1
            _count_script_op(op, result)


SCRIPT_OP = re.compile(r"(?<![\w.])(torch|ops\.\w+)\.(\w+)\(")
SCRIPT_ASSIGN = re.compile(r"(\w+) = (?:(\w+)\.(\w+)|getattr\((\w+), \"(\w+)\"\))\s*$", re.MULTILINE)
SCRIPT_CALL = re.compile(r"\((\w+)\)\.(\w+)\(|(?<![\w.])self\.(\w+)\(")


def _script_code_compute(archive: zipfile.ZipFile, root, result: Inspection) -> bool:
    """Ops of a .pt's forward from its code/ files, each submodule call expanded with the submodule the data
    pickle holds under that name (as the inlined graph would have them). False where the code cannot be
    followed (no module tree, no forward)."""
    if not isinstance(root, _Stub):
        return False
    names = set(archive.namelist())
    prefix = next((n.split("code/", 1)[0] for n in names if "/code/__torch__/" in n), "")
    sources: dict[str, str | None] = {}

    def method(instance: _Stub, name: str) -> str | None:
        module = getattr(type(instance), "script_module", "")
        path = f"{prefix}code/{module.replace('.', '/')}.py"
        if path not in sources:
            sources[path] = archive.read(path).decode("utf-8", "replace") if path in names else None
        text = sources[path]
        if text is None:
            return None
        start = text.find(f"class {type(instance).__name__}(")
        if start < 0:
            return None
        end = text.find("\nclass ", start + 1)
        block = text[start:end if end > 0 else len(text)]
        head = block.find(f"\n  def {name}(")
        if head < 0:
            return None
        tail = block.find("\n  def ", head + 1)
        return block[head:tail if tail > 0 else len(block)]

    def ops_of(instance: _Stub, name: str, depth: int) -> Counter | None:
        body = method(instance, name)
        if body is None or depth > 64:
            return None
        found = Counter(f"{'aten' if space == 'torch' else space.removeprefix('ops.')}::{op}"
                        for space, op in SCRIPT_OP.findall(body))
        # submodules by variable: `encoder = self.encoder`, `_0 = getattr(layer, "0")` (a ModuleList's item)
        variables: dict[str, Any] = {"self": instance}
        for var, base, attr, item_of, item in SCRIPT_ASSIGN.findall(body):
            owner = variables.get(base or item_of)
            owner_state = getattr(owner, "_state", None)
            if isinstance(owner_state, dict) and (attr or item) in owner_state:
                variables[var] = owner_state[attr or item]
        for var, called, own in SCRIPT_CALL.findall(body):
            child, child_method = (variables.get(var), called) if var else (instance, own)
            if isinstance(child, _Stub) and (child is not instance or own != name):
                found += ops_of(child, child_method, depth + 1) or Counter()
        return found

    ops = ops_of(root, "forward", 0)
    if ops is None:
        return False
    for op, count in ops.items():
        result.not_delegated[op] = result.not_delegated.get(op, 0) + count
        for _ in range(count):
            _count_script_op(op, result)
    return True


def _script_graph_compute(path: Path, result: Inspection) -> None:
    """Ops of a .pt's forward, inlined (each submodule call expanded), through torch.jit.load."""
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu")
        graph = module.forward.graph.copy()
        torch._C._jit_pass_inline(graph)
    except Exception as error:  # noqa: BLE001 - a module torch cannot load here: compute unknown
        result.notes.append(f"its ops are not counted: torch.jit.load failed ({type(error).__name__})")
        return

    def walk(block):
        for node in block.nodes():
            kind = node.kind()
            if not kind.startswith("prim::"):
                result.not_delegated[kind] = result.not_delegated.get(kind, 0) + 1
                _count_script_op(kind, result)
            for inner in node.blocks():
                walk(inner)

    walk(graph)


def _count_script_op(op: str, result: Inspection) -> None:
    kind = SCRIPT_COMPUTE.get(op)
    if op.startswith("quantized::") and re.search(r"conv|linear|matmul|lstm|gru", op):
        kind = "conv" if "conv" in op else "rnn" if re.search("lstm|gru", op) else "linear"
        result.compute.append(ComputeOp(kind, op, True))
    elif kind:
        result.compute.append(ComputeOp(kind, op, False))
