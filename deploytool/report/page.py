"""report.html of a target folder: what each artifact holds, its verdicts, the task metric and the cross-runtime
matrix, drawn from the same dict as report.json. One self-contained page, readable offline (no scripts).

    >>> write_target_html(target_report(reports, target="android", extra=extra), folder / "report.html")
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from deploytool.fsutil import atomic_write_text
from deploytool.report.html import STYLE


def write_target_html(report: dict[str, Any], path: Path) -> Path:
    """Write the page for one target's report.json content to `path` (atomically) and return it."""
    title = f"deploytool {report['target']}: {report['model']}"
    verdict = "PASS" if report["passed"] else "FAIL"
    sections = [f"<h1>{_e(title)}</h1>",
                f"<p class='{verdict.lower()}'>verdict: <b>{verdict}</b>; made {_e(report.get('created_at', ''))}"
                f"{_host(report)}</p>",
                _artifacts(report["artifacts"]), _cross(report.get("cross") or [])]
    adapted = report.get("model_adapted") or []
    if adapted:
        sections.append("<h2>How the model was adapted</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in adapted)
                        + "</ul>")
    sections += [_details(a) for a in report["artifacts"]]
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(title)}</title><style>{STYLE}"
            ".pass{color:#176f2c}.fail{color:#b00020}</style></head><body>" + "".join(sections) + "</body></html>")
    return atomic_write_text(path, page)


def _e(value: Any) -> str:
    return html.escape(str(value))


def _host(report: dict[str, Any]) -> str:
    cpu = report.get("host_cpu")
    return f"; measured on {_e(cpu['int8'])} ({_e(cpu['model'])})" if isinstance(cpu, dict) else ""


def _artifacts(artifacts: list[dict[str, Any]]) -> str:
    rows = ["<h2>Artifacts</h2><table><tr><th>file</th><th>format</th><th>holds</th><th>int8 weights</th>"
            "<th>int8 compute</th><th>size</th><th>delegated</th><th>SQNR vs eager</th><th>task metric</th>"
            "<th>verdict</th></tr>"]
    for a in artifacts:
        holds = a.get("holds") or {}
        eager = (a["parity"]["comparisons"] or [{}])[0]
        sqnr = min((o["sqnr_db"] for o in eager.get("outputs", [])), default=None)
        task = a.get("accuracy")
        cells = [a["file"] or f"{a['format']} (not built)", a["format"], holds.get("label", a["precision"]),
                 _share(holds.get("int8_weight_share")), _share(holds.get("int8_compute_share")),
                 f"{a['size_bytes'] / 1024:.1f} KiB", _share((a.get("delegation") or {}).get("share")),
                 "-" if sqnr is None else f"{sqnr:.1f} dB",
                 f"{task['metric']}: {task['artifact']:.2%} (eager {task['eager_fp32']:.2%})" if task else "-",
                 "PASS" if a["passed"] else "FAIL"]
        rows.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return "".join(rows) + "</table>"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _cross(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    out = ["<h2>Cross-runtime parity (held-out samples)</h2><table><tr><th>artifact</th><th>precision</th>"
           "<th>runtime</th><th>compared with</th><th>SQNR</th><th>top-1 agreement</th><th>verdict</th></tr>"]
    for r in rows:
        cells = [r.get("artifact"), r.get("precision"), r.get("runtime"), r.get("reference"),
                 "-" if r.get("sqnr_db") is None else f"{r['sqnr_db']:.1f} dB",
                 "-" if r.get("top1_agreement") is None else f"{r['top1_agreement']:.3f}", r.get("verdict")]
        out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return "".join(out) + "</table>"


def _details(artifact: dict[str, Any]) -> str:
    name = artifact["file"] or f"{artifact['format']} (not built)"
    lines = [f"<h3>{_e(name)}</h3><ul>"]
    holds = artifact.get("holds") or {}
    if holds.get("reason"):
        lines.append(f"<li>holds: {_e(holds['label'])}: {_e(holds['reason'])}</li>")
    build = artifact.get("build")
    if build:
        lines.append(f"<li class='fail'>not built: {_e(build['error'])}</li>")
    if artifact["parity"]["run_error"]:
        lines.append(f"<li class='fail'>did not run: {_e(artifact['parity']['run_error'])}</li>")
    for comparison in artifact["parity"]["comparisons"]:
        lines.append(f"<li>{_e(comparison['candidate'])} vs {_e(comparison['reference'])} on "
                     f"{comparison['samples']} held-out samples<ul>")
        for check in comparison["checks"]:
            mark = "info" if check["info"] else "ok" if check["passed"] else "FAIL"
            label = check.get("label_text") or check["name"]
            lines.append(f"<li class='{'fail' if mark == 'FAIL' else ''}'>[{mark}] {_e(check['output'])}: "
                         f"{_e(label)} {check['value']:.4g}{_e(check['detail'])} (limit {check['limit']:.4g})</li>")
        lines.append("</ul></li>")
    lines += [f"<li>note: {_e(note)}</li>" for note in artifact.get("notes", [])]
    return "".join(lines) + "</ul>"
