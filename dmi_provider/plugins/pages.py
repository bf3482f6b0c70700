"""HTML of the "Image mirror" pages: the frame, the styles (Airflow's fonts and colours, light and dark),
tables that sort and page on the server (hundreds of images stay readable; sorting needs no script). No
Airflow import here."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from dmi_provider.plugins.charts import CHART_STYLE

PER_PAGE = 50


def e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


STYLE = """
:root{--bg:#fff;--text:#1a202c;--muted:#4a5568;--border:#e2e8f0;--panel:#f7fafc;--link:#0b62c4;
--accent:#3b7bd4;--accent-soft:#a9c8f0;--copied:#38a169;--unchanged:#a0aec0;--failed:#e53e3e;--failed-text:#c53030;
--dry:#d69e2e;--banner:#ebf8ff;color-scheme:light}
:root.dark{--bg:#0f1115;--text:#e2e8f0;--muted:#a0aec0;--border:#2d3748;--panel:#171a21;--link:#7cb4f5;
--accent:#5b9ae6;--accent-soft:#2c4a70;--copied:#48bb78;--unchanged:#4a5568;--failed:#fc8181;--failed-text:#fc8181;
--dry:#ecc94b;--banner:#1a2a3d;color-scheme:dark}
@media (prefers-color-scheme:dark){:root:not(.light){--bg:#0f1115;--text:#e2e8f0;--muted:#a0aec0;--border:#2d3748;
--panel:#171a21;--link:#7cb4f5;--accent:#5b9ae6;--accent-soft:#2c4a70;--copied:#48bb78;--unchanged:#4a5568;
--failed:#fc8181;--failed-text:#fc8181;--dry:#ecc94b;--banner:#1a2a3d;color-scheme:dark}}
body{font-family:Inter,-apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif;margin:1rem 1.2rem;
color:var(--text);background:var(--bg);font-size:14px}
h1{font-size:1.25rem;font-weight:600;margin:.2rem 0 .6rem}h2{font-size:1.02rem;font-weight:600;margin:1.2rem 0 .4rem}
a{color:var(--link);text-decoration:none}a:hover{text-decoration:underline}
nav a{margin-right:1rem}table{border-collapse:collapse;width:100%;font-size:.86rem;margin-top:.6rem}
th,td{border-bottom:1px solid var(--border);padding:.35rem .5rem;text-align:left;vertical-align:middle}
th{background:var(--panel);font-weight:600;white-space:nowrap}th a{color:inherit}th .dir{color:var(--muted)}
code{font-size:.8rem}td:first-child,td.nowrap{white-space:nowrap}
.copied{color:var(--copied)}.unchanged{color:var(--muted)}.failed{color:var(--failed-text);font-weight:600}
.dry-run{color:var(--dry)}form.filters label{margin-right:.8rem}
input,select,button{font:inherit;color:var(--text);background:var(--bg);border:1px solid var(--border);
border-radius:4px;padding:.15rem .4rem}button{cursor:pointer}
button.primary{background:var(--accent);color:#fff;border-color:var(--accent)}
form.act{display:inline-flex;gap:.25rem;margin:0}.empty{color:var(--muted);margin-top:1rem}
.pager{margin:.6rem 0;color:var(--muted)}.pager a,.pager strong{margin-right:.5rem}
.banner{background:var(--banner);border:1px solid var(--border);border-radius:6px;padding:.5rem .8rem;margin:.6rem 0}
.banner.error{border-color:var(--failed)}
.badge{font-size:.72rem;color:var(--muted);border:1px solid var(--border);border-radius:4px;padding:0 .3rem;
margin-left:.3rem;white-space:nowrap}
"""

# Follow the theme of the Airflow UI around the frame (its <html> carries "dark" or "light"), live. Links to
# Airflow's own pages (target=_top) go through the UI's router: the frame's sandbox forbids navigating the top
# window, but the UI (same origin) may be told to show another of its pages.
PAGE_SCRIPT = """
(function(){var root=document.documentElement;function follow(){try{var p=window.parent.document.documentElement;
var dark=p.classList.contains("dark");root.classList.toggle("dark",dark);root.classList.toggle("light",!dark);}
catch(err){}}follow();try{new MutationObserver(follow).observe(window.parent.document.documentElement,
{attributes:true,attributeFilter:["class","style"]});}catch(err){}
document.addEventListener("click",function(ev){var a=ev.target.closest&&ev.target.closest("a[target=_top]");
if(!a||window.parent===window)return;var url=new URL(a.getAttribute("href"),location.href);
try{window.parent.history.pushState(null,"",url.pathname+url.search);
window.parent.dispatchEvent(new PopStateEvent("popstate",{state:null}));ev.preventDefault();}catch(err){}});})();
"""


def page(title: str, body: str, status_code: int = 200) -> tuple[str, int]:
    nav = '<nav><a href="./">Current state</a><a href="history">History</a></nav>'
    return (f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
            f"<title>{e(title)}</title><style>{STYLE}{CHART_STYLE}</style><script>{PAGE_SCRIPT}</script></head>"
            f"<body><h1>{e(title)}</h1>{nav}{body}</body></html>", status_code)


@dataclass(frozen=True)
class Column:
    title: str
    cell: Callable[[dict], str]  # the cell's HTML
    key: Callable[[dict], Any] | None = None  # sortable by this; None: not sortable
    name: str = ""  # in ?sort=
    css: str = ""  # the cells' class (e.g. "nowrap")


def sort_key(value: Callable[[dict], Any]) -> Callable[[dict], tuple]:
    """Sort None last in both directions' natural order, and never compare None with a value."""
    return lambda row: (value(row) is None, value(row) if value(row) is not None else 0)


def table(columns: Sequence[Column], rows: list[dict], empty: str, params: dict[str, str], sort: str | None,
          direction: str, page_no: int, per: int = PER_PAGE, path: str = "") -> str:
    """Rows sorted by the `sort` column and cut to one page; headers and pages are links that keep the
    page's other parameters."""
    if not rows:
        return f'<p class="empty">{e(empty)}</p>'
    chosen = next((c for c in columns if c.name and c.name == sort and c.key), None)
    if chosen is not None:
        rows = sorted(rows, key=sort_key(chosen.key), reverse=direction == "desc")  # type: ignore[arg-type]
    pages = max((len(rows) + per - 1) // per, 1)
    page_no = min(max(page_no, 1), pages)
    shown = rows[(page_no - 1) * per: page_no * per]

    def link(**changes: object) -> str:
        query = {k: v for k, v in {**params, **changes}.items() if v not in (None, "")}
        return f"{path}?{urlencode(query)}" if query else (path or "./")

    head = []
    for c in columns:
        if not c.name or c.key is None:
            head.append(f"<th>{e(c.title)}</th>")
            continue
        now = direction if chosen is c else ""
        flip = "asc" if now == "desc" else "desc" if now == "asc" else "asc"
        arrow = {"asc": " ▲", "desc": " ▼"}.get(now, "")
        head.append(f'<th data-sort="{e(now)}"><a href="{e(link(sort=c.name, dir=flip, page=1))}">{e(c.title)}'
                    f'<span class="dir">{arrow}</span></a></th>')
    cells = [(f'<td class="{c.css}">' if c.css else "<td>", c) for c in columns]
    body = "".join("<tr>" + "".join(f"{td}{c.cell(r)}</td>" for td, c in cells) + "</tr>" for r in shown)
    pager = ""
    if pages > 1:
        numbers = "".join(f"<strong>{n}</strong>" if n == page_no else f'<a href="{e(link(page=n))}">{n}</a>'
                          for n in range(1, pages + 1))
        pager = (f'<div class="pager" data-pages="{pages}" data-page="{page_no}">Page {numbers} '
                 f"({len(rows)} rows, {per} a page)</div>")
    return (f'<table data-rows="{len(rows)}" data-shown="{len(shown)}"><thead><tr>{"".join(head)}</tr></thead>'
            f"<tbody>{body}</tbody></table>{pager}")
