"""Recurrent layers as a runtime loop: `aten.lstm` and `aten.gru` become one `scan` over time per layer and
direction, instead of one copy of the cell per step.

torch's own decompositions of `aten.lstm` and `aten.gru` (torch/_decomp) unroll the recurrence over the sequence:
a 3-layer LSTM over 160 steps became ~12,000 edge nodes and lowering took ~14 minutes. Unrolled, every step's
hidden-to-hidden matmul is a node of its own, and a backend that packs weights per node stores the weight once
per step: AOTInductor with freezing packed a bidirectional GRU's weights 64 times over 32 steps (an int8 .pt2 of
16 MiB against 3.9 MiB fp32). ExecuTorch 1.5 emits `higher_order.scan` as a loop in the program, and Inductor
lowers it to a `while_loop`, so the graph, the lowering time and the weights stored stay the size of the model
whatever the sequence length. The input projection of every step at once is outside the loop (XNNPACK, oneDNN).
"""
from __future__ import annotations

import logging

log = logging.getLogger("deploytool")

RNN_ARGS = 9  # aten::{lstm,gru}.input(input, hx, params, has_biases, num_layers, dropout, train, bidirectional,
#               batch_first); hx is (h, c) for an LSTM, h for a GRU


def recurrent_as_scan(program, *, lstm: bool = True):
    """The program with each `aten.gru.input` (and `aten.lstm.input`, unless `lstm=False`) decomposed into a `scan`
    per layer and direction; unchanged when it has none, or has an LSTM this rewrite does not cover (projections:
    `proj_size`), which then unrolls as before.

    >>> program = recurrent_as_scan(torch.export.export(nn.GRU(40, 256, batch_first=True), (x,)))
    """
    import torch

    table = {torch.ops.aten.gru.input: _gru, **({torch.ops.aten.lstm.input: _lstm} if lstm else {})}
    nodes = [n for n in program.graph.nodes if n.op == "call_function" and n.target in table]
    if not nodes:
        return program
    if not all(_covered(n) for n in nodes):
        log.info("an LSTM with projections (proj_size) is unrolled over its time steps when lowered")
        return program
    # scan traces its step with dynamo, whose cache is keyed on scan's own wrapper code: after one kind of cell,
    # another got the first one's lifted inputs (unused placeholders without `val`; torch 2.13). Start clean.
    torch._dynamo.reset()
    return program.run_decompositions(table)


def _covered(node) -> bool:
    """No projections: each layer and direction has 2 weights (+2 biases), and an LSTM's h and c have one size."""
    import torch

    args = node.args
    if len(args) != RNN_ARGS:
        return False
    _, hx, params, has_biases, num_layers, _, _, bidirectional, _ = args
    per_direction = 4 if has_biases else 2
    if len(params) != num_layers * (2 if bidirectional else 1) * per_direction:
        return False
    if node.target is torch.ops.aten.gru.input:
        return True
    h, c = (v.meta["val"] for v in hx)
    return h.shape == c.shape


def _layers(input, params, has_biases, num_layers, bidirectional, batch_first, run_direction):
    """Shared layer loop of both cells: `run_direction(x, weights, index, reverse)` -> (finals, outputs)."""
    import torch

    x = input.transpose(0, 1) if batch_first else input  # [time, batch, features]
    directions = 2 if bidirectional else 1
    per_direction = 4 if has_biases else 2
    finals = []
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            weights = params[index * per_direction:(index + 1) * per_direction]
            final, out = run_direction(x, weights, index, direction == 1)
            outputs.append(out)
            finals.append(final)
        x = torch.cat(outputs, dim=-1) if directions == 2 else outputs[0]
    return (x.transpose(0, 1) if batch_first else x), finals


def _lstm(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
    """aten.lstm.input in inference: per layer, the input projection of all steps at once, then a scan."""
    import torch
    from torch._higher_order_ops.scan import scan

    def direction(x, weights, index, reverse):
        bias = weights[2] + weights[3] if len(weights) == 4 else None
        gates = torch.nn.functional.linear(x, weights[0], bias)
        hh_weight = weights[1]

        def step(carry, step_gates):
            h, c = carry
            i, f, g, o = (step_gates + torch.nn.functional.linear(h, hh_weight)).chunk(4, dim=-1)
            c = f.sigmoid() * c + i.sigmoid() * g.tanh()
            h = o.sigmoid() * c.tanh()
            return (h, c), h.clone()  # scan refuses an output that aliases the carry

        return scan(step, (hx[0][index], hx[1][index]), gates, reverse=reverse)

    out, finals = _layers(input, params, has_biases, num_layers, bidirectional, batch_first, direction)
    return out, torch.stack([h for h, _ in finals]), torch.stack([c for _, c in finals])


def _gru(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
    """aten.gru.input in inference: per layer, the input projection of all steps at once, then a scan.

    The hidden bias stays inside the step: the new gate multiplies it by the reset gate (torch.nn.GRU's formula).
    """
    import torch
    from torch._higher_order_ops.scan import scan

    def direction(x, weights, index, reverse):
        has_bias = len(weights) == 4
        gates = torch.nn.functional.linear(x, weights[0], weights[2] if has_bias else None)
        hh_weight, hh_bias = weights[1], weights[3] if has_bias else None

        def step(h, step_gates):
            ir, iz, in_ = step_gates.chunk(3, dim=-1)
            hr, hz, hn = torch.nn.functional.linear(h, hh_weight, hh_bias).chunk(3, dim=-1)
            r, z = (ir + hr).sigmoid(), (iz + hz).sigmoid()
            n = (in_ + r * hn).tanh()
            h = n + z * (h - n)
            return h, h.clone()  # scan refuses an output that aliases the carry

        return scan(step, hx[index], gates, reverse=reverse)

    out, finals = _layers(input, params, has_biases, num_layers, bidirectional, batch_first, direction)
    return out, torch.stack(finals)
