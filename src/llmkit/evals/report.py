"""Eval runs as people read them: one self-contained HTML page, and a comparison of two runs.

``html(run)`` writes cases × models with pass/fail, the outputs side by side (each assertion's
reason on the cell), per-model pass rates and score distributions as inline SVG — no scripts, no
network, one file to attach to a pull request. ``compare(a, b)`` lists the cases that regressed
(passed in ``a``, fail in ``b``) and improved.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from html import escape

from .runner import Run

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2330}h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;width:100%}th,td{border:1px solid #dde1e8;padding:6px 8px;vertical-align:top;text-align:left}
th{background:#f4f6f9}td.pass{background:#eefaf1}td.fail{background:#fdeeee}.badge{font-weight:600;font-size:12px}
.pass .badge{color:#1b7a3a}.fail .badge{color:#b3261e}pre{white-space:pre-wrap;margin:4px 0;font:12px/1.4 ui-monospace,monospace}
.why{color:#5a6372;font-size:12px}.meta{color:#5a6372}.charts{display:flex;gap:32px;flex-wrap:wrap}
"""


def _bars(values: dict[str, float], title: str, width: int = 360) -> str:
    """A horizontal bar chart (values in [0, 1]) as inline SVG."""
    h = 22 * len(values) + 30
    rows = []
    for i, (name, v) in enumerate(values.items()):
        y = 24 + 22 * i
        rows.append(f'<text x="0" y="{y + 12}" font-size="12">{escape(name[:28])}</text>'
                    f'<rect x="150" y="{y}" width="{(width - 200) * v:.1f}" height="16" fill="#4c78a8"/>'
                    f'<text x="{155 + (width - 200) * v:.1f}" y="{y + 12}" font-size="12">{v:.0%}</text>')
    return (f'<svg width="{width}" height="{h}" role="img" aria-label="{escape(title)}">'
            f'<text x="0" y="14" font-size="13" font-weight="600">{escape(title)}</text>{"".join(rows)}</svg>')


def _histogram(scores: list[float], title: str, bins: int = 10, width: int = 300, height: int = 120) -> str:
    """Score distribution (scores in [0, 1]) as inline SVG."""
    counts = [0] * bins
    for s in scores:
        counts[min(bins - 1, int(s * bins))] += 1
    top = max(counts) or 1
    bw = width / bins
    bars = "".join(f'<rect x="{i * bw + 1:.1f}" y="{20 + (height - 40) * (1 - c / top):.1f}" width="{bw - 2:.1f}" '
                   f'height="{(height - 40) * c / top:.1f}" fill="#72b7b2"><title>{i / bins:.1f}–{(i + 1) / bins:.1f}: {c}</title></rect>'
                   for i, c in enumerate(counts))
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(title)}">'
            f'<text x="0" y="14" font-size="13" font-weight="600">{escape(title)}</text>{bars}'
            f'<text x="0" y="{height - 4}" font-size="11">0</text><text x="{width - 10}" y="{height - 4}" font-size="11">1</text></svg>')


def html(run: Run) -> str:
    """The report page of ``run``."""
    models = run.models
    grid: dict[tuple[int, str, int], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in run.rows:
        grid[(r.case, r.prompt, r.repeat)][r.model].append(r)
    head = "".join(f"<th>{escape(m)}</th>" for m in models)
    body = []
    for (case, prompt, repeat), by_model in sorted(grid.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        first = next(iter(by_model.values()))[0]
        label = f"<b>{escape(first.description)}</b><div class='meta'>{escape(prompt)}" + \
                (f" · repeat {repeat}" if repeat else "") + "</div>"
        cells = []
        for m in models:
            rows = by_model.get(m)
            if not rows:
                cells.append("<td></td>")
                continue
            r = rows[0]
            why = "".join(f"<div class='why'>{'✓' if x.passed else '✗'} {escape(x.type)}: {escape(x.reason)}</div>"
                          for x in r.results)
            text = r.output.error or r.output.text
            cells.append(f"<td class='{'pass' if r.passed else 'fail'}'><span class='badge'>{'PASS' if r.passed else 'FAIL'}"
                         f"</span> <span class='meta'>score {r.score:.2f} · {r.output.latency_ms:.0f} ms"
                         f"{' · cached' if r.output.cached else ''}</span><pre>{escape(text[:2000])}</pre>{why}</td>")
        body.append(f"<tr><td>{label}</td>{''.join(cells)}</tr>")
    rates = {m: run.pass_rate(m) for m in models}
    charts = _bars(rates, "pass rate by model") + "".join(
        _histogram([r.score for r in run.rows if r.model == m], f"scores: {m}") for m in models)
    flaky = {k: v for k, v in run.case_rates().items() if 0 < v < 1}
    flaky_html = "".join(f"<li>case {c} · {escape(m)} · {escape(p)}: passes {v:.0%} of repeats</li>"
                         for (c, m, p), v in sorted(flaky.items()))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>llmkit eval {escape(run.id)}</title>"
            f"<style>{CSS}</style></head><body><h1>{escape(run.description or 'Eval run')} "
            f"<span class='meta'>{escape(run.id)}</span></h1>"
            f"<p class='meta'>{escape(run.suite)} · {len(run.rows)} answers · {run.calls} model calls · "
            f"{run.seconds:.1f} s · {sum(r.passed for r in run.rows)} passed</p>"
            f"<div class='charts'>{charts}</div>"
            + (f"<h2>Flaky cases</h2><ul>{flaky_html}</ul>" if flaky_html else "")
            + f"<h2>Cases × models</h2><table><tr><th>case</th>{head}</tr>{''.join(body)}</table></body></html>")


@dataclass
class Change:
    case: int
    description: str
    model: str
    prompt: str
    before: float     # pass rate over repeats in run a
    after: float      # ... in run b


def compare(a: Run, b: Run) -> tuple[list[Change], list[Change]]:
    """(regressions, improvements) between two runs of the same suite, matched on case, model and prompt."""
    ra, rb = a.case_rates(), b.case_rates()
    names = {(r.case, r.model, r.prompt): r.description for r in a.rows + b.rows}
    worse, better = [], []
    for k in sorted(set(ra) & set(rb)):
        if rb[k] < ra[k]:
            worse.append(Change(k[0], names[k], k[1], k[2], ra[k], rb[k]))
        elif rb[k] > ra[k]:
            better.append(Change(k[0], names[k], k[1], k[2], ra[k], rb[k]))
    return worse, better
