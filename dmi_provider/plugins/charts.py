"""Pictures of the history, drawn server-side as SVG (no script, no CDN: the UI works offline).
Plain Python: no Airflow import. Every mark carries data attributes, so tests (and people) can read
the numbers behind it."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime

WIDTH, HEIGHT, PAD = 640, 180, 34


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def budget_chart(registry: str, points: Sequence[dict]) -> str:
    """Pulls left at one source registry after each image, over time; a dashed line at the limit and a
    tick at the start of each DAG run. `points`: rows of TrackingStore.budget, oldest first."""
    if not points:
        return ""
    times = [p["finished_at"].timestamp() for p in points]
    limit = max((p["limit"] or 0) for p in points) or max(p["remaining"] for p in points) or 1
    start, end = min(times), max(times)
    span = (end - start) or 1.0

    def x(t: float) -> float:
        return PAD + (t - start) / span * (WIDTH - 2 * PAD)

    def y(v: float) -> float:
        return HEIGHT - PAD - v / limit * (HEIGHT - 2 * PAD)

    line = " ".join(f"{x(t):.1f},{y(p['remaining']):.1f}" for t, p in zip(times, points, strict=True))
    dots = "".join(
        f'<circle cx="{x(t):.1f}" cy="{y(p["remaining"]):.1f}" r="3" class="dmi-point" '
        f'data-remaining="{p["remaining"]}" data-section="{_e(p["section"])}">'
        f'<title>{_e(_when(p["finished_at"]))}: {p["remaining"]} of {p["limit"]} left after {_e(p["section"])} '
        f'({_e(p["dag_id"])} / {_e(p["run_id"])})</title></circle>' for t, p in zip(times, points, strict=True))
    runs: dict[tuple[str, str], float] = {}
    for t, p in zip(times, points, strict=True):
        runs.setdefault((p["dag_id"], p["run_id"]), t)
    ticks = "".join(
        f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{PAD - 8}" y2="{HEIGHT - PAD}" class="dmi-run" '
        f'data-run="{_e(run_id)}"><title>run {_e(dag_id)} / {_e(run_id)}</title></line>'
        for (dag_id, run_id), t in runs.items())
    axis = (f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{HEIGHT - PAD}" y2="{HEIGHT - PAD}" class="dmi-axis"/>'
            f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{y(limit):.1f}" y2="{y(limit):.1f}" class="dmi-limit"/>'
            f'<text x="{PAD - 4}" y="{y(limit) + 4:.1f}" text-anchor="end">{limit}</text>'
            f'<text x="{PAD - 4}" y="{HEIGHT - PAD + 4}" text-anchor="end">0</text>'
            f'<text x="{PAD}" y="{HEIGHT - 8}">{_e(_when(points[0]["finished_at"]))}</text>'
            f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" text-anchor="end">{_e(_when(points[-1]["finished_at"]))}</text>')
    return (f'<figure class="dmi-chart"><figcaption>{_e(registry)}: pulls left after each image</figcaption>'
            f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
            f'class="dmi-budget" data-registry="{_e(registry)}" data-points="{len(points)}" data-runs="{len(runs)}" '
            f'aria-label="{_e(registry)}: pulls left over time">{axis}{ticks}'
            f'<polyline points="{line}" class="dmi-line"/>{dots}</svg></figure>')


def budget_headline(registry: str, latest: dict, waiting: int) -> str:
    """'docker.io: 37 of 100 pulls left in this window; 2 images waiting', from the latest row."""
    left = f"{latest['remaining']} of {latest['limit']}" if latest["limit"] else str(latest["remaining"])
    who = f" for {latest['counted_for']}" if latest.get("counted_for") else ""
    wait = f"; {waiting} image{'s' if waiting != 1 else ''} waiting for pulls" if waiting else ""
    return (f'<p class="dmi-headline" data-registry="{_e(registry)}" data-remaining="{latest["remaining"]}" '
            f'data-waiting="{waiting}"><strong>{_e(registry)}</strong>: {_e(left)} pulls left{_e(who)} '
            f'(as of {_e(_when(latest["finished_at"]))}){_e(wait)}</p>')


CHART_STYLE = """
.dmi-chart{margin:.6rem 0 1rem}.dmi-chart figcaption{font-size:.85rem;color:#4a5568}
.dmi-budget text{font-size:10px;fill:#718096}.dmi-axis{stroke:#cbd5e0}.dmi-limit{stroke:#a0aec0;stroke-dasharray:4 3}
.dmi-run{stroke:#90cdf4;stroke-width:1}.dmi-line{fill:none;stroke:#2b6cb0;stroke-width:2}.dmi-point{fill:#2b6cb0}
.dmi-headline{margin:.3rem 0}
"""


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")
