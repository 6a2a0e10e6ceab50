"""ExecuTorch .pte with the XNNPACK partitioner."""
from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

from deploytool.errors import LowerError
from deploytool.export import Artifact, Delegation, Programs
from deploytool.fsutil import atomic_write_bytes

log = logging.getLogger("deploytool")


def write_pte(programs: Programs, folder: Path) -> list[Artifact]:
    """`model.pte` from the main program (int8 when quantized)."""
    started = time.perf_counter()
    data, delegation = lower_pte(programs.main)
    path = atomic_write_bytes(folder / "model.pte", data)
    return [Artifact(path, "pte", programs.precision, delegation, seconds=time.perf_counter() - started)]


def lower_pte(program) -> tuple[bytes, Delegation]:
    """Lower a static-shape ExportedProgram to .pte bytes, delegating what XNNPACK supports.

    >>> data, delegation = lower_pte(torch.export.export(model, (x,)))
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    try:
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        delegation = _delegation(edge.exported_program().graph_module)
        buffer = edge.to_executorch().buffer
    except Exception as exc:  # exir raises many types; all mean the lowering failed
        raise LowerError(f"Lowering to ExecuTorch failed: {type(exc).__name__}: {str(exc)[:500]}",
                         hint="Try --precision fp32 to tell quantization problems from lowering ones; -v for "
                              "the traceback.") from exc
    if delegation.not_delegated:
        log.info("ops left outside XNNPACK: %s", ", ".join(f"{op} x{n}" for op, n in delegation.not_delegated.items()))
    return buffer, delegation


def _delegation(graph_module) -> Delegation:
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    not_delegated = Counter({op: b.non_delegated for op, b in info.delegation_by_operator.items() if b.non_delegated})
    # Memory-format bookkeeping and getitem are not compute; counting them would skew the share.
    for bookkeeping in ("getitem", "alloc", "_to_dim_order_copy"):
        not_delegated.pop(bookkeeping, None)
    total = info.num_delegated_nodes + sum(not_delegated.values())
    return Delegation(info.num_delegated_nodes, total, dict(sorted(not_delegated.items())))
