"""report.html for a quantization diagnosis: one self-contained page, plots embedded as base64 PNGs.

Readable offline: no scripts, no external styles or images.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from deploytool.fsutil import atomic_write_text


def write_html(diagnosis, path: Path) -> Path:
    """Write the diagnosis page to `path` (atomically) and return it.

    >>> write_html(diagnosis, Path("build/deploytool/diagnosis/report.html"))
    """
    data = diagnosis.to_dict()
    sections = [
        f"<h1>Quantization diagnosis: {_e(data['model'])}</h1>",
        _summary(data),
        "<h2>Per-layer SQNR along the network</h2>",
        _img(_layer_plot(data), "per-layer SQNR"),
        _layer_table(data),
        "<h2>Output error</h2>",
        _img(_error_plot(diagnosis), "per-output error histograms"),
        *_search_table(data["search"]),
        "<h2>fp32 fallback trade-off</h2>",
        _img(_tradeoff_plot(data), "fp32 fallback trade-off") if data["fallback"] or data["sensitivity"]
        else "<p>Only one weighted layer: nothing to trade.</p>",
    ]
    if data["uncompared"]:
        sections += ["<h2>Layers not compared</h2><ul>"] + [f"<li>{_e(u['name'])}: {_e(u['reason'])}</li>"
                                                             for u in data["uncompared"]] + ["</ul>"]
    if data["warnings"]:
        sections += ["<h2>Calibration warnings</h2><ul>"] + [f"<li>{_e(w)}</li>" for w in data["warnings"]] + ["</ul>"]
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>deploytool diagnosis: {_e(data['model'])}"
            f"</title><style>{STYLE}</style></head><body>{''.join(sections)}</body></html>")
    return atomic_write_text(path, page)


STYLE = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:left}"
         "td.num{text-align:right}.jump{background:#fde0dc}img{max-width:100%}")


def _e(value: Any) -> str:
    return html.escape(str(value))


def _summary(data: dict[str, Any]) -> str:
    out = data["outputs"]
    rows = [f"<li>recipe: observer {_e(data['recipe']['observer'])}, "
            f"{'per-channel' if data['recipe']['per_channel'] else 'per-tensor'} weights, "
            f"{'symmetric' if data['recipe']['symmetric_activations'] else 'asymmetric'} activations; "
            f"kept in fp32: {_e(', '.join(data['kept_fp32']) or 'none')}</li>"]
    rows += [f"<li>{_e(m['name'])}: SQNR {m['sqnr_db']:.1f} dB, cosine {m['cosine']:.4f}"
             + (f", top-1 agreement {m['top1_agreement']:.3f}" if m["top1_agreement"] is not None else "")
             + "</li>" for m in out]
    accuracy = data["accuracy"]
    if accuracy["eager_fp32"] is not None and accuracy["int8"] is not None:
        rows.append(f"<li>top-1 accuracy: eager fp32 {accuracy['eager_fp32']:.2%}, int8 {accuracy['int8']:.2%}</li>")
    if data["first_jump"]:
        rows.append(f"<li>the error first jumps at <b>{_e(data['first_jump'])}</b></li>")
    if data["most_sensitive"]:
        rows.append(f"<li>most sensitive layers: <b>{_e(', '.join(data['most_sensitive']))}</b></li>")
    fallback = data["fallback"]
    if fallback:
        rows.append(f"<li>fp32 fallback {'met' if fallback['met'] else 'did NOT meet'} the budget "
                    f"{_e(fallback['budget'])}, keeping {_e(', '.join(fallback['kept_fp32']) or 'nothing')}</li>")
    return "<ul>" + "".join(rows) + "</ul>"


def _search_table(search: dict[str, Any] | None) -> list[str]:
    """The recipe search's steps (quantize/search.py), one row each, when the diagnosis ran after one."""
    if not search:
        return []
    budget = ", ".join(f"{k} {v}" for k, v in search["budget"].items())
    rows = [f"<h2>Recipe search</h2><p>budget: {_e(budget)}; kept: <b>{_e(search['activations'])}</b> int8"
            f"{'' if search['met'] else ' (no variant met the budget)'}</p>",
            "<table><tr><th>variant</th><th>SQNR (dB)</th><th>top-1 agreement</th><th>task metric</th>"
            "<th>.pte ms</th><th>.pte MB</th><th>verdict</th></tr>"]
    for step in search["steps"]:
        task = step["task"]
        cells = [_e(step["name"]), "-" if step["sqnr_db"] is None else f"{step['sqnr_db']:.1f}",
                 "-" if step["top1_agreement"] is None else f"{step['top1_agreement']:.3f}",
                 _e(f"{task['metric']} {task['artifact']:.2%} (eager {task['eager_fp32']:.2%})") if task else "-",
                 "-" if step["latency_ms"] is None else f"{step['latency_ms']:.2f}",
                 "-" if step["size_bytes"] is None else f"{step['size_bytes'] / 1e6:.2f}",
                 "meets the budget" if step["met"] else
                 _e(f"failed: {step['error']}" if step.get("error") else "misses " + "; ".join(step["missed"]))]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return rows + ["</table>"]


def _layer_table(data: dict[str, Any]) -> str:
    rows = ["<table><tr><th>layer</th><th>type</th><th>SQNR (dB)</th><th>held-out clipped</th></tr>"]
    for layer in data["layers"]:
        mark = " class='jump'" if layer["name"] == data["first_jump"] else ""
        clipped = f"{layer['clipped_share']:.2%}" if layer["clipped_share"] is not None else "-"
        rows.append(f"<tr{mark}><td>{_e(layer['name'])}</td><td>{_e(layer['type'])}</td>"
                    f"<td class='num'>{layer['sqnr_db']:.1f}</td><td class='num'>{clipped}</td></tr>")
    return "".join(rows) + "</table>"


def _figure(width: float = 9, height: float = 3.5):
    import matplotlib

    matplotlib.use("Agg")  # no display: render straight to PNG
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _png(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _img(png: str, alt: str) -> str:
    return f"<p><img alt='{_e(alt)}' src='data:image/png;base64,{png}'></p>"


def _layer_plot(data: dict[str, Any]) -> str:
    layers = data["layers"]
    figure, axes = _figure()
    names = [layer["name"] for layer in layers]
    values = [layer["sqnr_db"] for layer in layers]
    axes.plot(range(len(values)), values, marker="o")
    if data["first_jump"] in names:
        at = names.index(data["first_jump"])
        axes.plot([at], [values[at]], marker="o", color="red", markersize=10, label=f"jump: {names[at]}")
        axes.legend()
    axes.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    axes.set_ylabel("SQNR vs fp32 (dB)")
    axes.grid(alpha=0.3)
    return _png(figure)


def _error_plot(diagnosis) -> str:
    errors = diagnosis.evaluation.errors
    figure, axes = _figure(height=3)
    figure.clear()
    for i, (metrics, error) in enumerate(zip(diagnosis.evaluation.metrics, errors)):
        ax = figure.add_subplot(1, len(errors), i + 1)
        ax.hist(error, bins=60, log=True)
        ax.set_title(f"{metrics.name}: int8 - fp32 ({metrics.sqnr_db:.1f} dB)", fontsize=9)
    return _png(figure)


def _tradeoff_plot(data: dict[str, Any]) -> str:
    figure, axes = _figure()
    fallback = data["fallback"]
    if fallback:
        size, xs, ys = 0.0, [], []
        for step in fallback["steps"]:
            size += step["extra_bytes"] / 1024
            xs.append(size)
            ys.append(step["sqnr_db"])
            axes.annotate(step["layer"] or "all int8", (size, step["sqnr_db"]), fontsize=7,
                          textcoords="offset points", xytext=(4, 4))
        axes.plot(xs, ys, marker="o")
        if "min_sqnr_db" in fallback["budget"]:
            axes.axhline(fallback["budget"]["min_sqnr_db"], color="red", linestyle="--", label="budget")
            axes.legend()
        axes.set_xlabel("extra size from fp32 weights (KiB, cumulative)")
        axes.set_ylabel("output SQNR (dB)")
    else:
        ranking = data["sensitivity"]
        axes.bar([s["name"] for s in ranking], [s["alone_sqnr_db"] for s in ranking])
        axes.set_ylabel("output SQNR, only this layer int8 (dB)")
        axes.tick_params(axis="x", rotation=60, labelsize=7)
        for i, s in enumerate(ranking):
            axes.annotate(f"+{s['extra_bytes'] / 1024:.1f} KiB fp32", (i, s["alone_sqnr_db"]), fontsize=7,
                          ha="center", textcoords="offset points", xytext=(0, 3))
    axes.grid(alpha=0.3)
    return _png(figure)
