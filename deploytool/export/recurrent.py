"""Recurrent layers as a runtime loop: `aten.lstm` becomes one `scan` over time instead of one copy per step.

torch's own decomposition of `aten.lstm` (torch/_decomp) unrolls the recurrence over the sequence: a 3-layer
LSTM over 160 steps became ~12,000 edge nodes and lowering took ~14 minutes. ExecuTorch 1.5 emits
`higher_order.scan` as a loop in the program, so the graph, the lowering time and the weights stored stay the
size of the model whatever the sequence length. The step body (one hidden-to-hidden matmul and the gates) runs
in ExecuTorch's portable kernels; the input projection of every step at once is outside the loop and goes to
XNNPACK.
"""
from __future__ import annotations

import logging

log = logging.getLogger("deploytool")

LSTM_ARGS = 9  # aten::lstm.input(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)


def lstm_as_scan(program):
    """The program with each `aten.lstm.input` decomposed into a `scan` per layer and direction; unchanged when
    it has none, or has one this rewrite does not cover (projections: `proj_size`), which then unrolls as before.

    >>> program = lstm_as_scan(torch.export.export(nn.LSTM(40, 256, batch_first=True), (x,)))
    """
    import torch

    lstm = torch.ops.aten.lstm.input
    nodes = [n for n in program.graph.nodes if n.op == "call_function" and n.target is lstm]
    if not nodes:
        return program
    if not all(_covered(n) for n in nodes):
        log.info("an LSTM with projections (proj_size) is unrolled over its time steps when lowered")
        return program
    return program.run_decompositions({lstm: _lstm})


def _covered(node) -> bool:
    """No projections: each layer and direction has 2 weights (+2 biases), and h and c have one size."""
    args = node.args
    if len(args) != LSTM_ARGS:
        return False
    _, hx, params, has_biases, num_layers, _, _, bidirectional, _ = args
    per_direction = 4 if has_biases else 2
    h, c = (v.meta["val"] for v in hx)
    return len(params) == num_layers * (2 if bidirectional else 1) * per_direction and h.shape == c.shape


def _lstm(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
    """aten.lstm.input in inference: per layer, the input projection of all steps at once, then a scan."""
    import torch

    x = input.transpose(0, 1) if batch_first else input  # [time, batch, features]
    directions = 2 if bidirectional else 1
    per_direction = 4 if has_biases else 2
    finals_h, finals_c = [], []
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            weights = params[index * per_direction:(index + 1) * per_direction]
            bias = weights[2] + weights[3] if has_biases else None
            gates = torch.nn.functional.linear(x, weights[0], bias)
            (h, c), out = _scan_cell(gates, hx[0][index], hx[1][index], weights[1], reverse=direction == 1)
            outputs.append(out)
            finals_h.append(h)
            finals_c.append(c)
        x = torch.cat(outputs, dim=-1) if directions == 2 else outputs[0]
    out = x.transpose(0, 1) if batch_first else x
    return out, torch.stack(finals_h), torch.stack(finals_c)


def _scan_cell(gates, h0, c0, hh_weight, *, reverse: bool):
    """((h, c) after the last step, h at every step) of one LSTM direction given its precomputed input gates."""
    import torch
    from torch._higher_order_ops.scan import scan

    def step(carry, step_gates):
        h, c = carry
        i, f, g, o = (step_gates + torch.nn.functional.linear(h, hh_weight)).chunk(4, dim=-1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        h = o.sigmoid() * c.tanh()
        return (h, c), h.clone()  # scan refuses an output that aliases the carry

    return scan(step, (h0, c0), gates, reverse=reverse)
