"""ExecuTorch .pte with the XNNPACK partitioner."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from deploytool import cache
from deploytool.errors import LowerError
from deploytool.export import Artifact, Delegation, Programs
from deploytool.fsutil import atomic_write_bytes, atomic_write_json

log = logging.getLogger("deploytool")

BOOKKEEPING = ("getitem", "alloc", "to_dim_order_copy")
PTE_CACHE = Path(".cache") / "pte"  # under the output folder: lowered .pte files by program content
# Part of every lowering cache key: bump it when deploytool changes how one program is lowered (2: GRUs as loops).
LOWERING_REVISION = 2


def write_pte(programs: Programs, folder: Path) -> list[Artifact]:
    """`model.pte` from the main program (int8 when quantized)."""
    started = time.perf_counter()
    data, delegation = pte_of(programs)
    path = atomic_write_bytes(folder / "model.pte", data)
    # The fp32 .pte is not built in an int8 run; it holds at least the eager weights.
    fp32_bytes = weight_bytes(programs.prepared.loaded.module) if programs.precision == "int8" else None
    return [Artifact(path, "pte", programs.precision, delegation, seconds=time.perf_counter() - started,
                     fp32_bytes=fp32_bytes)]


def pte_of(programs: Programs) -> tuple[bytes, Delegation]:
    """`programs.main` lowered to .pte bytes once per export (.pte and .bpte share it), cached across runs by
    content in <output>/.cache/pte.

    >>> data, delegation = pte_of(programs)
    """
    if "pte" not in programs.memo:
        cache_dir = programs.prepared.config.output_dir / PTE_CACHE
        saved_as = programs.int8_file if programs.precision == "int8" else None
        programs.memo["pte"] = ((saved_as and cached_pte_of_file(saved_as, cache_dir=cache_dir))
                                or lower_pte_cached(programs.main, cache_dir=cache_dir, saved_as=saved_as))
    return programs.memo["pte"]


def weight_bytes(module) -> int:
    """Bytes of a module's parameters and buffers, each stored once (tied weights count once)."""
    tensors = {id(t): t for t in (*module.parameters(), *module.buffers())}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def lower_pte(program) -> tuple[bytes, Delegation]:
    """Lower a static-shape ExportedProgram to .pte bytes, delegating what XNNPACK supports.

    When XNNPACK fails on some nodes, they are left out of the delegate (export.exclude) and
    `Delegation.excluded` says which and why.

    >>> data, delegation = lower_pte(torch.export.export(model, (x,)))
    """
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    from deploytool.export.exclude import lower_excluding, tagged
    from deploytool.export.recurrent import recurrent_as_scan

    # The edge-dialect verifier re-checks every op after each pass; the .pte is run in the real runtime
    # right after, which is the check that counts (mobilenet_v2: 0.5 s of 15 s).
    compile_config = EdgeCompileConfig(_check_ir_validity=False)
    try:
        program = recurrent_as_scan(program)  # a loop in the program, not one copy of the cell per time step
        with _without_provenance(program), tagged(program):
            edge, excluded = lower_excluding(lambda partitioner: to_edge_transform_and_lower(
                program, partitioner=[partitioner], compile_config=compile_config))
        delegation = _delegation(edge.exported_program().graph_module, _excluded_at(program, excluded))
        buffer = edge.to_executorch().buffer
    except Exception as exc:  # exir raises many types; all mean the lowering failed
        raise LowerError(f"Lowering to ExecuTorch failed: {type(exc).__name__}: {str(exc)[:500]}",
                         hint="Try --precision fp32 to tell quantization problems from lowering ones; -v for "
                              "the traceback.") from exc
    for node, reason in delegation.excluded.items():
        log.warning("left %s out of the XNNPACK delegate: %s", node, reason)
    if delegation.not_delegated:
        log.info("ops left outside XNNPACK: %s", ", ".join(f"{op} x{n}" for op, n in delegation.not_delegated.items()))
    return buffer, delegation


def _excluded_at(program, excluded: dict[str, str]) -> dict[str, str]:
    """{node name: "op at file:line: reason"} for the nodes the fallback left out of the delegate."""
    nodes = {node.name: node for node in program.graph.nodes if node.name in excluded}  # every tag is a name
    return {name: f"{nodes[name].target} at {_source_line(nodes[name])}: {reason}" for name, reason in excluded.items()}


@contextlib.contextmanager
def _without_provenance(program):
    """Lower without the nodes' `from_node` history, then put it back.

    Each of exir's ~40 passes deep-copies every node's history and adds a level to it, so its cost grows
    with every pass before (mobilenet_v2: 1.7 s of 15 s). The .pte does not carry it.
    """
    saved = {node: node.meta.pop("from_node") for node in program.graph.nodes if "from_node" in node.meta}
    try:
        yield
    finally:
        for node, history in saved.items():
            node.meta["from_node"] = history


def lower_pte_cached(program, *, cache_dir: Path, saved_as: Path | None = None,
                     claim: Callable[[list[Path]], None] | None = None) -> tuple[bytes, Delegation]:
    """`lower_pte`, reusing the bytes from `cache_dir` when a program with the same content was lowered before.

    The key hashes the graph, every weight and constant, and the library versions, so a changed model,
    recipe or executorch release lowers again. `saved_as`, the file torch.export.save wrote the program to, is
    remembered with the key, so `cached_pte_of_file` finds the .pte from that file without loading it. `claim`
    is told a new entry's files just before they are written (export.background: a stopped child's are removed).

    >>> data, delegation = lower_pte_cached(program, cache_dir=Path("build/deploytool/.cache/pte"))
    """
    key = program_fingerprint(program)
    if saved_as is not None:
        atomic_write_bytes(_file_alias(saved_as, cache_dir), key.encode())
    cached = _cached(key, cache_dir)
    if cached:
        return cached
    data, delegation = lower_pte(program)
    data_path, info_path = _entry(key, cache_dir)
    if claim is not None:
        claim([*cache.files_of(data_path), info_path])
    cache.store(data_path, data)
    atomic_write_json(info_path, dataclasses.asdict(delegation))  # last: marks the entry complete
    return data, delegation


def cached_pte_of_file(saved_as: Path, *, cache_dir: Path) -> tuple[bytes, Delegation] | None:
    """The cached .pte of the program saved in `saved_as` (by content, library versions included), else None.

    >>> cached_pte_of_file(Path("build/deploytool/quantized/program.pt2"), cache_dir=out / PTE_CACHE)
    """
    try:
        key = _file_alias(saved_as, cache_dir).read_text().strip()
    except OSError:  # not lowered through lower_pte_cached(saved_as=...) yet
        return None
    return _cached(key, cache_dir) if re.fullmatch(r"[0-9a-f]{24}", key) else None


def _file_alias(saved_as: Path, cache_dir: Path) -> Path:
    """Where the program key of the file `saved_as` is kept: named by the file's bytes and the library versions."""
    from deploytool.fsutil import sha256_file
    from deploytool.versions import versions

    digest = hashlib.sha256(f"{sha256_file(saved_as)}|{sorted(versions().items())}".encode()).hexdigest()[:24]
    return cache_dir / "files" / f"{digest}.key"


def _entry(key: str, cache_dir: Path) -> tuple[Path, Path]:
    """A cache entry's files: the .pte bytes, and its delegation summary (written last, so it marks completion)."""
    return cache_dir / f"{key}.pte", cache_dir / f"{key}.json"


def _cached(key: str, cache_dir: Path) -> tuple[bytes, Delegation] | None:
    """The entry's bytes and delegation, when both are there and the bytes match their sha256 (deploytool.cache)."""
    data_path, info_path = _entry(key, cache_dir)
    if not info_path.is_file():
        return None
    try:
        delegation = Delegation.from_dict(json.loads(info_path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("ignoring the unreadable lowering cache entry %s; lowering again", info_path)
        return None
    data = cache.fetch(data_path)
    if data is None:
        return None
    log.info("reusing the lowered .pte from %s (same program content)", data_path)
    return data, delegation


def pte_cost(program, *, cache_dir: Path, example_inputs: tuple, runs: int = 30):
    """The program's .pte lowered through `lower_pte_cached`, measured (quantize.session.PteCost): median batch-1
    latency in the ExecuTorch runtime (30 runs after a warm-up are steady enough to rank variants of one model),
    size, and the share of its weight bytes stored in 8 bits, read from the file.

    >>> pte_cost(program, cache_dir=Path("build/deploytool/.cache/pte"), example_inputs=(x,)).latency_ms
    3.66
    """
    from executorch.runtime import Runtime

    from deploytool.fsutil import scratch
    from deploytool.progress import quiet_native_stderr
    from deploytool.quantize.session import PteCost
    from deploytool.report.inspect import holdings
    from deploytool.runtime.timing import measure

    data, _ = lower_pte_cached(program, cache_dir=cache_dir)
    with quiet_native_stderr(log):
        method = Runtime.get().load_program(data).load_method("forward")
    inputs = tuple(t.contiguous() for t in example_inputs)
    timed = measure(lambda: method.execute(inputs), runs=runs, warmup=1, load_s=0.0, thread_setting="")
    with scratch("cost") as folder:
        (Path(folder) / "model.pte").write_bytes(data)
        share = holdings(Path(folder) / "model.pte", "pte").int8_weight_share
    return PteCost(timed["median_ms"], len(data), share)


def program_fingerprint(program) -> str:
    """Content hash of an ExportedProgram: graph code, signature, weights, constants and library versions."""
    import torch

    from deploytool.versions import versions

    digest = hashlib.sha256(f"{LOWERING_REVISION}|{sorted(versions().items())}".encode())
    digest.update(program.graph_module.code.encode())
    digest.update(str(program.graph_signature).encode())
    tensors = {**program.state_dict, **program.constants}
    for name in sorted(tensors):
        value = tensors[name]
        digest.update(name.encode())
        if isinstance(value, torch.Tensor):
            digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        else:  # constants may also hold script objects; their repr stands in
            digest.update(repr(value).encode())
    return digest.hexdigest()[:24]


def _delegation(graph_module, excluded: dict[str, str]) -> Delegation:
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    # Memory-format bookkeeping and getitem are not compute; counting them would skew the share.
    not_delegated = Counter({op: b.non_delegated for op, b in info.delegation_by_operator.items()
                             if b.non_delegated and not any(word in op for word in BOOKKEEPING)})
    total = info.num_delegated_nodes + sum(not_delegated.values())
    return Delegation(info.num_delegated_nodes, total, dict(sorted(not_delegated.items())),
                      _where(graph_module, set(not_delegated)), excluded)


def _where(graph_module, op_types: set[str]) -> dict[str, tuple[str, ...]]:
    """op type -> the user source lines (file:line, from the capture's stack traces) of its non-delegated nodes."""
    found: dict[str, set[str]] = {}
    for node in graph_module.graph.nodes:
        op_type = re.sub(r"_\d+$", "", node.name)  # the naming get_delegation_info uses
        if node.op != "call_function" or op_type not in op_types:
            continue
        found.setdefault(op_type, set()).add(_source_line(node))
    return {op: tuple(sorted(lines)) for op, lines in sorted(found.items())}


def _source_line(node) -> str:
    """file:line of the user code that made `node`, from the capture's stack trace."""
    frames = re.findall(r'File "([^"]+)", line (\d+)', node.meta.get("stack_trace") or "")
    user = [f"{Path(file).name}:{line}" for file, line in frames if "site-packages" not in file]
    return user[-1] if user else "unknown source line"
