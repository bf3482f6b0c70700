"""Tables that sort and page on the server (hundreds of images stay readable; sorting needs no script):
which rows a page shows and where its header and pager links go. templates/tables.html draws them. No
Airflow import here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

PER_PAGE = 50


@dataclass(frozen=True)
class Column:
    title: str
    key: Callable[[dict], Any] | None = None  # sortable by this; None: not sortable
    name: str = ""  # in ?sort=


@dataclass(frozen=True)
class Header:
    title: str
    href: str | None = None  # None: not sortable
    sort: str = ""  # this column's order now: "asc", "desc" or ""
    arrow: str = ""


@dataclass(frozen=True)
class Table:
    headers: list[Header]
    rows: list[dict]  # the rows of this page
    total: int
    empty: str  # said when there is no row at all
    pages: list[tuple[int, str | None]]  # (number, link); None for this page; empty when one page holds all
    page: int
    per: int


def sort_key(value: Callable[[dict], Any]) -> Callable[[dict], tuple]:
    """Sort None last in both directions' natural order, and never compare None with a value."""
    return lambda row: (value(row) is None, value(row) if value(row) is not None else 0)


@dataclass(frozen=True)
class Paging:
    """Which order and page of a table to show, and what its links keep."""
    params: dict[str, str] = field(default_factory=dict)  # the page's other query parameters
    sort: str | None = None  # a Column's name
    direction: str = "asc"
    page: int = 1
    per: int = PER_PAGE
    path: str = ""  # the page's address, relative (e.g. "history")


def table(columns: Sequence[Column], rows: list[dict], empty: str, paging: Paging | None = None) -> Table:
    """Rows sorted by the `sort` column and cut to one page; headers and pages are links that keep the
    page's other parameters."""
    paging = paging or Paging()
    sort, direction, per, path = paging.sort, paging.direction, paging.per, paging.path
    chosen = next((c for c in columns if c.name and c.name == sort and c.key), None)
    if chosen is not None:
        rows = sorted(rows, key=sort_key(chosen.key), reverse=direction == "desc")  # type: ignore[arg-type]
    count = max((len(rows) + per - 1) // per, 1)
    page_no = min(max(paging.page, 1), count)

    def link(**changes: object) -> str:
        query = {k: v for k, v in {**paging.params, **changes}.items() if v not in (None, "")}
        return f"{path}?{urlencode(query)}" if query else (path or "./")

    headers = []
    for c in columns:
        if not c.name or c.key is None:
            headers.append(Header(c.title))
            continue
        now = direction if chosen is c else ""
        flip = "asc" if now == "desc" else "desc" if now == "asc" else "asc"
        headers.append(Header(c.title, link(sort=c.name, dir=flip, page=1), now,
                              {"asc": " ▲", "desc": " ▼"}.get(now, "")))
    pages = [(n, None if n == page_no else link(page=n)) for n in range(1, count + 1)] if count > 1 else []
    return Table(headers, rows[(page_no - 1) * per: page_no * per], len(rows), empty, pages, page_no, per)
