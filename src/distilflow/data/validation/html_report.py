"""The offline HTML report: one self-contained page (inline CSS, inline SVG charts, no scripts).

GX's own Data Docs load their CSS and JavaScript from CDNs, so they render as an unstyled page on a machine
without network access; this page has no external reference at all and opens from a file or an MLflow artifact.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from distilflow.config.rules import ERROR, RULES, WARNING
from distilflow.data.validation.findings import Finding, ValidationReport

_CSS = """
body{font:14px/1.45 -apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;margin:24px;color:#1f2328;
background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
.meta{color:#57606a;margin-bottom:12px}
.verdict{display:inline-block;padding:6px 14px;border-radius:6px;font-weight:600;color:#fff;margin:6px 0 10px}
.ok{background:#1a7f37}.fail{background:#cf222e}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:8px 0}
.card{border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:20px}
table{border-collapse:collapse;margin:6px 0 10px;max-width:100%}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.zero td{color:#8c959f}
.sev{font-weight:600;border-radius:4px;padding:0 6px;font-size:12px}
.sev.error{background:#ffebe9;color:#cf222e}.sev.warning{background:#fff8c5;color:#9a6700}.sev.off{background:#eee;color:#666}
code,.value{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;white-space:pre-wrap;
word-break:break-word}
.charts{display:flex;gap:18px;flex-wrap:wrap;align-items:flex-start}
.chart{border:1px solid #d0d7de;border-radius:6px;padding:6px 10px}
.more{color:#57606a;font-style:italic}
"""


def _severity_badge(severity: str) -> str:
    return f'<span class="sev {escape(severity)}">{escape(severity)}</span>'


def _bar_chart(title: str, labels: list[str], values: list[float], band: tuple[float, float] | None) -> str:
    """Horizontal bars of class shares, with the allowed band drawn as a shaded strip."""
    width, left, bar, gap = 360, 110, 22, 8
    plot_bottom = 24 + len(labels) * (bar + gap)
    height = plot_bottom + (18 if band is not None else 4)
    scale = width - left - 50
    parts = [
        f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="14" font-size="13" font-weight="600">{escape(title)}</text>',
    ]
    if band is not None:
        low, high = band
        parts += [
            f'<rect x="{left + low * scale:.1f}" y="20" width="{(high - low) * scale:.1f}" '
            f'height="{plot_bottom - 24}" fill="#dafbe1"/>',
            f'<text x="{left}" y="{plot_bottom + 10}" font-size="11" fill="#57606a">'
            f"green band: allowed share {low:.0%}–{high:.0%}</text>",
        ]
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 24 + index * (bar + gap)
        inside = band is None or band[0] <= value <= band[1]
        colour = "#0969da" if inside else "#cf222e"
        parts += [
            f'<text x="{left - 6}" y="{y + 15}" font-size="12" text-anchor="end">{escape(label)}</text>',
            f'<rect x="{left}" y="{y}" width="{max(value * scale, 1):.1f}" height="{bar}" fill="{colour}"/>',
            f'<text x="{left + value * scale + 4:.1f}" y="{y + 15}" font-size="12">{value:.1%}</text>',
        ]
    parts.append("</svg>")
    return "".join(parts)


def _histogram(title: str, histogram: dict[str, list[float]], marker: float | None, unit: str) -> str:
    """Column histogram; ``marker`` draws a limit (max_chars) when it falls within the plotted range."""
    edges, counts = histogram.get("edges", []), histogram.get("counts", [])
    width, height, bottom, left = 420, 190, 30, 40
    parts = [
        f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="14" font-size="13" font-weight="600">{escape(title)}</text>',
    ]
    if counts:
        top = max(counts) or 1
        plot_w, plot_h = width - left - 10, height - bottom - 26
        column = plot_w / len(counts)
        for index, count in enumerate(counts):
            h = plot_h * count / top
            x = left + index * column
            parts.append(
                f'<rect x="{x:.1f}" y="{22 + plot_h - h:.1f}" width="{max(column - 1, 1):.1f}" height="{h:.1f}" '
                f'fill="#54aeff"><title>{edges[index]:.0f}–{edges[index + 1]:.0f} {unit}: {count}</title></rect>'
            )
        baseline = 22 + plot_h
        parts += [
            f'<line x1="{left}" y1="{baseline}" x2="{left + plot_w}" y2="{baseline}" stroke="#57606a"/>',
            f'<text x="{left}" y="{baseline + 14}" font-size="11">{edges[0]:.0f}</text>',
            f'<text x="{left + plot_w}" y="{baseline + 14}" font-size="11" text-anchor="end">'
            f"{edges[-1]:.0f} {unit}</text>",
            f'<text x="{left - 4}" y="30" font-size="11" text-anchor="end">{top}</text>',
        ]
        if marker is not None and edges[0] <= marker <= edges[-1] and edges[-1] > edges[0]:
            x = left + plot_w * (marker - edges[0]) / (edges[-1] - edges[0])
            parts.append(
                f'<line x1="{x:.1f}" y1="22" x2="{x:.1f}" y2="{baseline}" stroke="#cf222e" stroke-dasharray="4 3"/>'
            )
    else:
        parts.append('<text x="0" y="40" font-size="12">no rows</text>')
    parts.append("</svg>")
    return "".join(parts)


def _findings_tables(report: ValidationReport, severity: str, anchors: set[str]) -> str:
    """Tables of the listed rows, one per rule and file; ``anchors`` keeps each rule's link target unique."""
    findings_of = [finding for finding in report.findings if finding.severity == severity]
    if not findings_of:
        return f"<p>No {severity}s.</p>"
    totals: dict[tuple[str, str], int] = {}
    for count in report.counts:
        if count.severity == severity:
            totals[(count.rule, count.file)] = totals.get((count.rule, count.file), 0) + count.count
    groups: dict[tuple[str, str], list[Finding]] = {}
    for finding in findings_of:
        groups.setdefault((finding.rule, finding.file), []).append(finding)
    html = []
    for (rule, file), findings in groups.items():
        total = totals.get((rule, file), len(findings))
        anchor = "" if rule in anchors else f' id="rule-{escape(rule)}"'
        anchors.add(rule)
        html.append(
            f"<h3{anchor}>{_severity_badge(severity)} <code>{escape(rule)}</code> in "
            f"<code>{escape(file)}</code>: {total}</h3><p>{escape(RULES[rule].description)}</p>"
        )
        html.append("<table><tr><th>line</th><th>column</th><th>value</th><th>detail</th></tr>")
        for finding in findings:
            line = "whole file" if finding.line is None else str(finding.line)
            html.append(
                f'<tr><td class="num">{escape(line)}</td><td><code>{escape(finding.column or "")}</code></td>'
                f'<td class="value">{escape(finding.value)}</td><td>{escape(finding.detail)}</td></tr>'
            )
        html.append("</table>")
        if total > len(findings):
            html.append(
                f'<p class="more">{total - len(findings)} more not listed '
                f"(validate.max_errors_reported caps the list; summary.json has the counts)</p>"
            )
    return "".join(html)


def _dropped_text(entry: dict[str, Any]) -> str:
    """``2 (label_not_in_set 2)``: the count, then which rules dropped the rows."""
    by_rule = entry.get("dropped_by_rule", {})
    rules = ", ".join(f"{rule} {count}" for rule, count in sorted(by_rule.items()))
    return f"{entry['dropped']:,}" + (f" ({rules})" if rules else "")


def _splits_table(summary: dict[str, Any]) -> str:
    html: list[str] = []
    html.append(
        "<h2>Splits</h2><p>Every row read is either kept for <code>data/validated</code> or dropped, each dropped "
        "row named under <code>row_dropped</code> or an error.</p><table><tr><th>split</th><th>file</th>"
        "<th>rows read</th><th>rows kept</th><th>rows dropped</th><th>errors</th><th>warnings</th>"
        "<th>class shares</th><th>characters (min / mean / max)</th></tr>"
    )
    for split, entry in summary["splits"].items():
        shares = ", ".join(f"{label}: {share:.1%}" for label, share in entry.get("class_shares", {}).items())
        chars = entry.get("chars")
        chars_text = f"{chars['min']} / {chars['mean']:.0f} / {chars['max']}" if chars else ""
        html.append(
            f"<tr><td>{escape(split)}</td><td><code>{escape(entry['file'])}</code></td>"
            f"<td class='num'>{entry['read']:,}</td><td class='num'>{entry['rows']:,}</td>"
            f"<td class='num'>{escape(_dropped_text(entry))}</td><td class='num'>{entry['errors']}</td>"
            f"<td class='num'>{entry['warnings']}</td><td>{escape(shares)}</td><td>{escape(chars_text)}</td></tr>"
        )
    html.append("</table>")
    return "".join(html)


def _rules_table(summary: dict[str, Any]) -> str:
    html: list[str] = []
    html.append(
        "<h2>Rules</h2><table><tr><th>rule</th><th>severity</th><th>checks</th><th>errors</th><th>warnings</th></tr>"
    )
    for name, entry in summary["rules"].items():
        zero = entry["errors"] == 0 and entry["warnings"] == 0
        code = f"<code>{escape(name)}</code>"
        link = code if zero else f"<a href='#rule-{escape(name)}'>{code}</a>"
        severity = _severity_badge(entry["severity"]) if entry["checked"] else "not for this task"
        html.append(
            f"<tr class='{'zero' if zero else ''}'><td>{link}</td><td>{severity}</td>"
            f"<td>{escape(RULES[name].description)}</td><td class='num'>{entry['errors']}</td>"
            f"<td class='num'>{entry['warnings']}</td></tr>"
        )
    html.append("</table>")
    return "".join(html)


def render_html(report: ValidationReport, stats: dict[str, dict[str, Any]]) -> str:
    summary = report.summary
    settings = summary.get("settings", {})
    verdict = "PASSED" if report.ok else "FAILED"
    html = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>distilflow validation: {escape(report.task)} {verdict}</title><style>{_CSS}</style></head><body>",
        f"<h1>Data validation: {escape(report.task)} ({escape(str(summary.get('kind', '')))})</h1>",
        f"<div class='meta'>folder <code>{escape(str(report.data_dir))}</code> · suite "
        f"<code>{escape(str(summary['suite']['name']))}</code> · Great Expectations "
        f"{escape(str(summary['suite']['great_expectations']))} · "
        f"{summary['suite']['expectations']} expectations</div>",
        f"<div class='verdict {'ok' if report.ok else 'fail'}'>{verdict}</div>",
        "<div class='cards'>",
        f"<div class='card'>errors<b>{report.errors}</b></div>",
        f"<div class='card'>warnings<b>{report.warnings}</b></div>",
    ]
    for split, rows in summary["rows"].items():
        html.append(f"<div class='card'>{escape(split)} rows kept<b>{rows:,}</b></div>")
    html.append(f"<div class='card'>rows dropped<b>{report.dropped:,}</b></div>")
    html.append(f"<div class='card'>seconds<b>{summary['elapsed_seconds']:.1f}</b></div></div>")

    anchors: set[str] = set()
    html.append(f"<h2>Errors</h2>{_findings_tables(report, ERROR, anchors)}")

    html.append(_splits_table(summary))

    html.append("<h2>Distributions</h2><div class='charts'>")
    band = (float(settings.get("class_share_min", 0.0)), float(settings.get("class_share_max", 1.0)))
    for split, split_stats in stats.items():
        if "class_shares" in split_stats:
            labels = list(split_stats["class_shares"])
            values = [float(split_stats["class_shares"][label]) for label in labels]
            html.append(f"<div class='chart'>{_bar_chart(f'{split}: class shares', labels, values, band)}</div>")
        if "_score_histogram" in split_stats:
            chart = _histogram(f"{split}: score", split_stats["_score_histogram"], None, "")
            html.append(f"<div class='chart'>{chart}</div>")
        marker = float(settings["max_chars"]) if "max_chars" in settings else None
        chart = _histogram(f"{split}: text length", split_stats["_chars_histogram"], marker, "chars")
        html.append(f"<div class='chart'>{chart}</div>")
    html.append("</div>")

    html.append(_rules_table(summary))
    html.append(f"<h2>Warnings</h2>{_findings_tables(report, WARNING, anchors)}")
    html.append("<h2>Settings</h2><table>")
    for key, value in settings.items():
        html.append(f"<tr><th>validate.{escape(key)}</th><td><code>{escape(str(value))}</code></td></tr>")
    html.append("</table></body></html>\n")
    return "".join(html)


def write_report(report: ValidationReport, report_dir: Path, stats: dict[str, dict[str, Any]]) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / "index.html"
    path.write_text(render_html(report, stats), encoding="utf-8")
    return path
