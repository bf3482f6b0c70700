"""Pictures of the history, drawn server-side as SVG (no script, no CDN: the UI works offline). This module
does the geometry (where each mark goes); templates/charts.html draws the marks, escaped like every page.
Plain Python: no Airflow import. Every mark carries data attributes, so tests (and people) can read the
numbers behind it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from markupsafe import Markup

from dmi_provider.plugins.render import human_bytes, macro

__all__ = ["blob_chart", "budget_chart", "budget_headline", "dag_runs_chart", "digest_timeline", "headline",
           "human_bytes", "run_strip"]

WIDTH, HEIGHT, PAD = 640, 180, 34
SIZE = {"width": WIDTH, "height": HEIGHT, "pad": PAD}


def _f(value: float) -> str:
    return f"{value:.1f}"


def budget_geometry(registry: str, points: Sequence[dict]) -> dict:
    """Pulls left at one source registry after each image, over time; a dashed line at the limit and a
    tick at the start of each DAG run. `points`: rows of TrackingStore.budget, oldest first."""
    times = [p["finished_at"].timestamp() for p in points]
    limit = max((p["limit"] or 0) for p in points) or max(p["remaining"] for p in points) or 1
    start, end = min(times), max(times)
    span = (end - start) or 1.0

    def x(t: float) -> str:
        return _f(PAD + (t - start) / span * (WIDTH - 2 * PAD))

    def y(v: float) -> float:
        return HEIGHT - PAD - v / limit * (HEIGHT - 2 * PAD)

    runs: dict[tuple[str, str], float] = {}
    for t, p in zip(times, points, strict=True):
        runs.setdefault((p["dag_id"], p["run_id"]), t)
    return {**SIZE, "registry": registry, "limit": limit, "limit_y": _f(y(limit)), "limit_label_y": _f(y(limit) + 4),
            "line": " ".join(f"{x(t)},{_f(y(p['remaining']))}" for t, p in zip(times, points, strict=True)),
            "dots": [{"cx": x(t), "cy": _f(y(p["remaining"])), "row": p} for t, p in zip(times, points, strict=True)],
            "ticks": [{"x": x(t), "dag_id": d, "run_id": r} for (d, r), t in runs.items()],
            "first": points[0]["finished_at"], "last": points[-1]["finished_at"]}


def budget_chart(registry: str, points: Sequence[dict]) -> Markup:
    return macro("charts.html", "budget_chart", budget_geometry(registry, points)) if points else Markup("")


def budget_headline(registry: str, latest: dict, waiting: int) -> Markup:
    """'docker.io: 37 of 100 pulls left in this window; 2 images waiting', from the latest row."""
    return macro("charts.html", "budget_headline", registry, latest, waiting)


def headline(images: int, failing: int, changed: int, nbytes: int) -> Markup:
    """The state page's four numbers, each with a data attribute."""
    return macro("charts.html", "headline", {"images": images, "failing": failing, "changed": changed,
                                             "bytes": nbytes})


def strip_geometry(runs: Sequence[dict]) -> dict:
    """One square per recent run of an image, oldest first, coloured by its status."""
    size, gap = 8, 2
    counts = {s: 0 for s in ("copied", "unchanged", "failed", "dry-run")}
    for run in runs:
        counts[run["status"]] = counts.get(run["status"], 0) + 1
    return {"size": size, "width": len(runs) * (size + gap), "counts": counts,
            "marks": [{"x": i * (size + gap), "row": r} for i, r in enumerate(runs)]}


def run_strip(runs: Sequence[dict]) -> Markup:
    return macro("charts.html", "run_strip", strip_geometry(runs)) if runs else Markup("")


def timeline_geometry(digests: Sequence[dict], now: datetime) -> dict:
    """A lane per digest the image has had: from when it was first seen to when it was last seen, with the
    run that brought it. `digests`: digest, first_seen, last_seen, runs, run_id, dag_id; oldest first."""
    lane, top, left, right = 26, 8, 150, 20
    start = min(d["first_seen"] for d in digests).timestamp()
    end = max(now.timestamp(), max(d["last_seen"] for d in digests).timestamp())
    span = (end - start) or 1.0

    def x(t: datetime) -> float:
        return left + (t.timestamp() - start) / span * (WIDTH - left - right)

    lanes = []
    for i, d in enumerate(digests):
        x1, x2 = x(d["first_seen"]), x(d["last_seen"])
        lanes.append({"row": d, "y": top + i * lane, "label_y": top + i * lane + 14, "bar_y": top + i * lane + 4,
                      "x": _f(x1), "w": _f(max(x2 - x1, 6)), "current": i == len(digests) - 1})
    axis_y = top + lane * len(digests) + 4
    return {"width": WIDTH, "height": top + lane * len(digests) + 24, "left": left, "right_x": WIDTH - right,
            "lane_h": lane - 10, "label_x": left - 8, "axis_y": axis_y, "axis_label_y": axis_y + 14, "lanes": lanes,
            "first": digests[0]["first_seen"]}


def digest_timeline(digests: Sequence[dict], now: datetime) -> Markup:
    return macro("charts.html", "digest_timeline", timeline_geometry(digests, now)) if digests else Markup("")


def bars_geometry(groups: Sequence[dict], series: Sequence[str], title: Callable[[dict], str]) -> dict:
    """Stacked bars, one per group (a run), oldest on the left."""
    top = max((sum(g[s] for s in series) for g in groups), default=0) or 1
    slot = (WIDTH - 2 * PAD) / len(groups)
    width = max(min(slot * 0.7, 28), 2)
    bars = []
    for i, g in enumerate(groups):
        cx, y = PAD + slot * i + (slot - width) / 2, HEIGHT - PAD
        rects = []
        for s in series:
            h = g[s] / top * (HEIGHT - 2 * PAD)
            if h > 0:
                y -= h
                rects.append({"x": _f(cx), "y": _f(y), "w": _f(width), "h": _f(h), "series": s})
        bars.append({"row": g, "title": title(g), "rects": rects})
    return {**SIZE, "top": top, "series": series, "bars": bars, "first": groups[0]["finished_at"],
            "last": groups[-1]["finished_at"]}


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def runs_geometry(runs: Sequence[dict]) -> dict:
    """Per DAG run: how many images it copied, found unchanged, failed (TrackingStore.runs, oldest first)."""
    return bars_geometry(runs, ("copied", "unchanged", "failed"),
                         lambda r: f"{r['run_id']} ({_when(r['finished_at'])}): {r['copied']} copied, "
                                   f"{r['unchanged']} unchanged, {r['failed']} failed, {human_bytes(r['bytes'])}")


def blobs_geometry(rows: Sequence[dict]) -> dict:
    """Per run of one image: blobs copied, mounted and skipped (history rows, oldest first), bytes in the tip."""
    groups = [{**r, "copied": r["blobs_copied"], "mounted": r["blobs_mounted"], "skipped": r["blobs_skipped"]}
              for r in rows]
    return bars_geometry(groups, ("copied", "mounted", "skipped"),
                         lambda r: f"{r['run_id']} ({_when(r['finished_at'])}): {r['status']}, "
                                   f"{human_bytes(r['bytes_transferred'] or 0)}, blobs {r['copied']} copied / "
                                   f"{r['mounted']} mounted / {r['skipped']} skipped")


def dag_runs_chart(runs: Sequence[dict]) -> Markup:
    return macro("charts.html", "dag_runs_chart", runs_geometry(runs)) if runs else Markup("")


def blob_chart(rows: Sequence[dict]) -> Markup:
    return macro("charts.html", "blob_chart", blobs_geometry(rows)) if rows else Markup("")
