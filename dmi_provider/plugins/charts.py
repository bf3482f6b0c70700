"""Pictures of the history, drawn server-side as SVG (no script, no CDN: the UI works offline).
Plain Python: no Airflow import. Every mark carries data attributes, so tests (and people) can read
the numbers behind it."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
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


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    unit = "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            break
        n /= 1024
    return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"


def headline(images: int, failing: int, changed: int, nbytes: int) -> str:
    """The state page's four numbers, each with a data attribute."""
    cards = (("images", images, "images mirrored"), ("failing", failing, "failing now"),
             ("changed", changed, "changed in the last 7 days"), ("bytes", human_bytes(nbytes), "bytes mirrored"))
    alarm = " dmi-alarm" if failing else ""
    body = "".join(f'<div class="dmi-card dmi-card-{key}{alarm if key == "failing" else ""}"><strong>{_e(value)}'
                   f"</strong><span>{_e(label)}</span></div>" for key, value, label in cards)
    return (f'<section class="dmi-cards" data-images="{images}" data-failing="{failing}" data-changed="{changed}" '
            f'data-bytes="{nbytes}">{body}</section>')


def _counts(runs: Sequence[dict]) -> dict[str, int]:
    out = {s: 0 for s in ("copied", "unchanged", "failed", "dry-run")}
    for run in runs:
        out[run["status"]] = out.get(run["status"], 0) + 1
    return out


def run_strip(runs: Sequence[dict]) -> str:
    """One square per recent run of an image, oldest first, coloured by its status."""
    if not runs:
        return ""
    size, gap = 8, 2
    marks = "".join(
        f'<rect x="{i * (size + gap)}" y="1" width="{size}" height="{size}" rx="2" class="s-{_e(r["status"])}">'
        f'<title>{_e(_when(r["finished_at"]))}: {_e(r["status"])} ({_e(r["run_id"])})</title></rect>'
        for i, r in enumerate(runs))
    counts = _counts(runs)
    width = len(runs) * (size + gap)
    return (f'<svg class="dmi-strip" width="{width}" height="{size + 2}" viewBox="0 0 {width} {size + 2}" role="img" '
            f'data-runs="{len(runs)}" data-copied="{counts["copied"]}" data-unchanged="{counts["unchanged"]}" '
            f'data-failed="{counts["failed"]}" aria-label="last {len(runs)} runs">{marks}</svg>')


def digest_timeline(digests: Sequence[dict], now: datetime) -> str:
    """A lane per digest the image has had: from when it was first seen to when it was last seen, with the
    run that brought it. `digests`: digest, first_seen, last_seen, runs, run_id, dag_id; oldest first."""
    if not digests:
        return ""
    lane, top, left, right = 26, 8, 150, 20
    height = top + lane * len(digests) + 24
    start = min(d["first_seen"] for d in digests).timestamp()
    end = max(now.timestamp(), max(d["last_seen"] for d in digests).timestamp())
    span = (end - start) or 1.0

    def x(t: datetime) -> float:
        return left + (t.timestamp() - start) / span * (WIDTH - left - right)

    parts = []
    for i, d in enumerate(digests):
        y = top + i * lane
        x1, x2 = x(d["first_seen"]), x(d["last_seen"])
        parts.append(
            f'<g class="dmi-digest" data-digest="{_e(d["digest"])}" data-runs="{d["runs"]}" '
            f'data-run="{_e(d["run_id"])}">'
            f'<text x="{left - 8}" y="{y + 14}" text-anchor="end" class="dmi-label">{_e(d["digest"][7:19])}</text>'
            f'<rect x="{x1:.1f}" y="{y + 4}" width="{max(x2 - x1, 6):.1f}" height="{lane - 10}" rx="3" '
            f'class="dmi-bar{" dmi-current" if i == len(digests) - 1 else ""}"><title>{_e(d["digest"])}: first seen '
            f'{_e(_when(d["first_seen"]))} (run {_e(d["run_id"])}), last seen {_e(_when(d["last_seen"]))}, '
            f'{d["runs"]} run{"s" if d["runs"] != 1 else ""}</title></rect></g>')
    axis_y = top + lane * len(digests) + 4
    parts.append(f'<line x1="{left}" x2="{WIDTH - right}" y1="{axis_y}" y2="{axis_y}" class="dmi-axis"/>'
                 f'<text x="{left}" y="{axis_y + 14}" class="dmi-label">{_e(_when(digests[0]["first_seen"]))}</text>'
                 f'<text x="{WIDTH - right}" y="{axis_y + 14}" text-anchor="end" class="dmi-label">now</text>')
    return (f'<figure class="dmi-chart"><figcaption>Digests over time (a lane per digest, newest at the bottom)'
            f'</figcaption><svg class="dmi-timeline" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
            f'role="img" data-digests="{len(digests)}">{"".join(parts)}</svg></figure>')


def _bars(groups: Sequence[dict], series: Sequence[str], caption: str, css: str, label: Callable[[dict], str],
          attrs: Callable[[dict], str]) -> str:
    """Stacked bars, one per group (a run), oldest on the left."""
    if not groups:
        return ""
    top = max((sum(g[s] for s in series) for g in groups), default=0) or 1
    n = len(groups)
    slot = (WIDTH - 2 * PAD) / n
    width = max(min(slot * 0.7, 28), 2)
    parts = []
    for i, g in enumerate(groups):
        cx, y = PAD + slot * i + (slot - width) / 2, HEIGHT - PAD
        rects = []
        for s in series:
            h = g[s] / top * (HEIGHT - 2 * PAD)
            if h > 0:
                y -= h
                rects.append(f'<rect x="{cx:.1f}" y="{y:.1f}" width="{width:.1f}" height="{h:.1f}" class="s-{s}"/>')
        parts.append(f'<g class="dmi-bar-group" {attrs(g)}><title>{_e(label(g))}</title>{"".join(rects)}</g>')
    axis = (f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{HEIGHT - PAD}" y2="{HEIGHT - PAD}" class="dmi-axis"/>'
            f'<text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end" class="dmi-label">{top}</text>'
            f'<text x="{PAD}" y="{HEIGHT - 10}" class="dmi-label">{_e(_when(groups[0]["finished_at"]))}</text>'
            f'<text x="{WIDTH - PAD}" y="{HEIGHT - 10}" text-anchor="end" class="dmi-label">'
            f'{_e(_when(groups[-1]["finished_at"]))}</text>')
    legend = "".join(f'<span class="dmi-key"><i class="s-{s}"></i>{_e(s)}</span>' for s in series)
    return (f'<figure class="dmi-chart"><figcaption>{_e(caption)} {legend}</figcaption><svg class="{css}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" data-runs="{n}">'
            f'{axis}{"".join(parts)}</svg></figure>')


def dag_runs_chart(runs: Sequence[dict]) -> str:
    """Per DAG run: how many images it copied, found unchanged, failed (TrackingStore.runs, oldest first)."""
    return _bars(runs, ("copied", "unchanged", "failed"), "Images per run:", "dmi-runs",
                 lambda r: f"{r['run_id']} ({_when(r['finished_at'])}): {r['copied']} copied, {r['unchanged']} "
                           f"unchanged, {r['failed']} failed, {human_bytes(r['bytes'])}",
                 lambda r: (f'data-run="{_e(r["run_id"])}" data-copied="{r["copied"]}" '
                            f'data-unchanged="{r["unchanged"]}" data-failed="{r["failed"]}"'))


def blob_chart(rows: Sequence[dict]) -> str:
    """Per run of one image: blobs copied, mounted and skipped (history rows, oldest first), bytes in the tip."""
    groups = [{**r, "copied": r["blobs_copied"], "mounted": r["blobs_mounted"], "skipped": r["blobs_skipped"]}
              for r in rows]
    return _bars(groups, ("copied", "mounted", "skipped"), "Blobs per run:", "dmi-blobs",
                 lambda r: f"{r['run_id']} ({_when(r['finished_at'])}): {r['status']}, "
                           f"{human_bytes(r['bytes_transferred'] or 0)}, blobs {r['copied']} copied / "
                           f"{r['mounted']} mounted / {r['skipped']} skipped",
                 lambda r: (f'data-run="{_e(r["run_id"])}" data-status="{_e(r["status"])}" '
                            f'data-bytes="{r["bytes_transferred"] or 0}" data-copied="{r["copied"]}" '
                            f'data-mounted="{r["mounted"]}" data-skipped="{r["skipped"]}"'))


CHART_STYLE = """
.dmi-chart{margin:.6rem 0 1rem}.dmi-chart figcaption{font-size:.85rem;color:var(--muted)}
.dmi-chart svg{max-width:100%;height:auto}
.dmi-budget text,.dmi-label{font-size:10px;fill:var(--muted)}.dmi-axis{stroke:var(--border)}
.dmi-limit{stroke:var(--muted);stroke-dasharray:4 3}
.dmi-run{stroke:var(--accent-soft);stroke-width:1}.dmi-line{fill:none;stroke:var(--accent);stroke-width:2}
.dmi-point{fill:var(--accent)}.dmi-headline{margin:.3rem 0}
.s-copied{fill:var(--copied);background:var(--copied)}.s-unchanged{fill:var(--unchanged);background:var(--unchanged)}
.s-failed{fill:var(--failed);background:var(--failed)}.s-dry-run{fill:var(--dry);background:var(--dry)}
.s-mounted{fill:var(--accent);background:var(--accent)}.s-skipped{fill:var(--unchanged);background:var(--unchanged)}
.dmi-bar{fill:var(--accent-soft)}.dmi-bar.dmi-current{fill:var(--accent)}
.dmi-key{margin-left:.7rem;white-space:nowrap}
.dmi-key i{display:inline-block;width:.7rem;height:.7rem;margin-right:.25rem;border-radius:2px;vertical-align:-1px}
.dmi-cards{display:flex;gap:.8rem;flex-wrap:wrap;margin:.8rem 0}
.dmi-card{border:1px solid var(--border);border-radius:8px;padding:.6rem .9rem;min-width:9rem;background:var(--panel)}
.dmi-card strong{display:block;font-size:1.5rem;font-weight:600}.dmi-card span{color:var(--muted);font-size:.8rem}
.dmi-alarm strong{color:var(--failed-text)}
"""


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")
