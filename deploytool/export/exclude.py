"""Lowering that survives an XNNPACK failure: find the nodes the delegate fails on, lower the rest without them.

Each node of the captured program is tagged with its name in `meta["custom"]`, which exir's decompositions and
partitioning copy onto every node made from it, so one name follows a node from capture into the delegate.
"""
from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any

log = logging.getLogger("deploytool")

TAG = "deploytool_node"  # key in node.meta["custom"]: the node's name in the captured program
MAX_LOWERINGS = 12  # one culprit costs 1 retry when the traceback names it, ~log2(groups) + 1 when bisected
DELEGATE_CODE = ("/executorch/backends/", "/executorch/exir/backend/")  # a failure raised in here is the delegate's


def tag_of(node) -> str | None:
    return (node.meta.get("custom") or {}).get(TAG)


@contextlib.contextmanager
def tagged(program):
    """Tag every call_function node of `program` with its name for the length of the block."""
    saved = {node: node.meta.get("custom") for node in program.graph.nodes if node.op == "call_function"}
    for node, custom in saved.items():
        node.meta["custom"] = {**(custom or {}), TAG: node.name}
    try:
        yield
    finally:
        for node, custom in saved.items():
            if custom is None:
                node.meta.pop("custom", None)
            else:
                node.meta["custom"] = custom


def partitioner(excluded: frozenset[str] = frozenset()):
    """An XnnpackPartitioner that keeps the nodes tagged with `excluded` names out of the delegate and records
    the groups it matched (`.groups`, as tag tuples in graph order) for bisection."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    class Excluding(XnnpackPartitioner):
        def __init__(self):
            super().__init__()
            self.groups: list[tuple[str, ...]] = []

        def ops_to_not_decompose(self, ep):
            # An excluded op that exir keeps whole for XNNPACK would be left undelegated and undecomposed, which
            # exir rejects; decomposed, it runs on the portable kernels.
            ops, supported = super().ops_to_not_decompose(ep)
            return ops, lambda node: tag_of(node) not in excluded and supported(node)

        def get_matched_nodes_from_configs(self, ep):
            matched = super().get_matched_nodes_from_configs(ep)
            tags = [tuple(dict.fromkeys(t for n in group if (t := tag_of(n)))) for group in matched]
            self.groups = [t for t in tags if t]
            return [group for group, t in zip(matched, tags) if not excluded.intersection(t)]

    return Excluding()


def lower_excluding(lower: Callable[[Any], Any]) -> tuple[Any, dict[str, str]]:
    """`lower(partitioner)` -> edge program manager, retried without the nodes that make XNNPACK fail.

    Returns the manager and {node name: why it was left out}. The node is the one the failing pass was on when
    the traceback names one, else the match group found by bisecting the partitioner's groups. Re-raises the
    first error when the failure is not the delegate's, or when MAX_LOWERINGS lowerings do not get through.

    >>> edge, excluded = lower_excluding(lambda p: to_edge_transform_and_lower(program, partitioner=[p]))
    >>> excluded
    {'prelu_4': 'ChannelsLastTaggedReshapePass: AssertionError: Attempting to convert non-NHWC ...'}
    """
    first = partitioner()
    try:
        return lower(first), {}
    except Exception as exc:  # exir raises many types; the delegate's are retried without their nodes
        if not _in_delegate(exc):
            raise
        search = _Search(lower, first.groups, exc)
    while search.lowerings < MAX_LOWERINGS:
        named = _named_in_traceback(search.error) - search.excluded.keys()
        found = (named, search.error) if named else search.bisect()
        if found is None:
            break
        search.excluded.update(dict.fromkeys(sorted(found[0]), _reason(found[1])))
        log.info("XNNPACK lowering failed; lowering again without %s", ", ".join(search.excluded))
        edge, error = search.attempt(frozenset(search.excluded))
        if error is None:
            return edge, search.excluded
        if not _in_delegate(error):
            break
        search.error = error
    raise search.first


class _Search:
    """The state of one fallback: lowerings spent, nodes excluded so far, the latest delegate error."""

    def __init__(self, lower: Callable[[Any], Any], groups: list[tuple[str, ...]], error: Exception):
        self.lower, self.groups, self.first, self.error = lower, groups, error, error
        self.lowerings, self.excluded = 1, {}

    def attempt(self, names: frozenset[str]) -> tuple[Any, Exception | None]:
        self.lowerings += 1
        try:
            return self.lower(partitioner(names)), None
        except Exception as exc:  # as in lower_excluding
            return None, exc

    def bisect(self) -> tuple[tuple[str, ...], Exception] | None:
        """(the first group whose delegation makes lowering fail, its error): the shortest failing prefix of the
        groups not excluded yet, delegated alone. Delegating all of them is the failure at hand."""
        excluded = frozenset(self.excluded)
        candidates = [g for g in self.groups if not excluded.intersection(g)]
        passes, fails, failure = 0, len(candidates), self.error
        while fails - passes > 1 and self.lowerings < MAX_LOWERINGS:
            middle = (passes + fails) // 2
            _, error = self.attempt(excluded | {t for g in candidates[middle:] for t in g})
            if error is None:
                passes = middle
            else:
                fails, failure = middle, error
        return (candidates[fails - 1], failure) if fails - passes == 1 else None


def _chain(exc: BaseException):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def _in_delegate(exc: BaseException) -> bool:
    """Raised while partitioning or inside a backend's preprocess, not by capture, edge conversion or emit."""
    for link in _chain(exc):
        tb = link.__traceback__
        while tb is not None:
            if any(part in tb.tb_frame.f_code.co_filename for part in DELEGATE_CODE):
                return True
            tb = tb.tb_next
    return False


def _named_in_traceback(exc: BaseException) -> set[str]:
    """The tag of the node the deepest failing pass frame was on (its local `node`): passes loop over nodes."""
    from torch.fx import Node

    for link in _chain(exc):
        frames, tb = [], link.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame)
            tb = tb.tb_next
        for frame in reversed(frames):
            node = frame.f_locals.get("node") if "/executorch/" in frame.f_code.co_filename else None
            if isinstance(node, Node) and node.op == "call_function" and tag_of(node):
                return {tag_of(node)}
    return set()


def _reason(exc: BaseException) -> str:
    """`Pass: RootError: message`, from the exception chain (exir wraps a pass's error in its own)."""
    links = list(_chain(exc))
    passes = [m.group(1) for link in links if (m := re.search(r"running the '(\w+)' pass", str(link)))]
    root = links[-1]
    message = str(root).strip().splitlines()[0][:200] if str(root).strip() else ""
    return (f"{passes[0]}: " if passes else "") + f"{type(root).__name__}: {message}"
