"""What went wrong in a config file: one issue per problem, each naming file:line, section, key, value and
what is allowed, and ConfigError carrying them all. Plain Python: no Airflow import here."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT = "DEFAULT"


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    message: str
    section: str | None = None
    key: str | None = None
    value: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [where]
        if self.section is not None:
            parts.append(f"section {self.section!r}")  # not [name]: Airflow's rich CLI takes brackets for markup
        if self.key is not None:
            parts.append(self.key if self.value is None else f"{self.key} = {_hide_password(self.value)!r}")
        return ": ".join([*parts, self.message])


def _hide_password(value: str) -> str:
    """A URL's userinfo never reaches an error message (a proxy URL written into config.ini): the password, or
    a token written as the user (`http://TOKEN@host`)."""
    return re.sub(r"://[^/@\s]*@", "://***@", value)


class ConfigError(ValueError):
    """All the problems found in one config file."""

    def __init__(self, issues: Iterable[ConfigIssue]):
        self.issues = tuple(issues)
        n = len(self.issues)
        head = f"{n} problem{'s' if n != 1 else ''} in the mirror configuration:"
        super().__init__("\n".join([head, *(f"  {i}" for i in self.issues)]))


def _line_index(text: str) -> dict[tuple[str, str | None], int]:
    """(section, key) -> line number, and (section, None) -> the header's line."""
    index: dict[tuple[str, str | None], int] = {}
    section = None
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;" or raw[:1].isspace():
            continue
        if line.startswith("[") and "]" in line:
            section = line[1 : line.index("]")]
            index.setdefault((section, None), n)
        elif section is not None:
            key = re.split(r"[=:]", line, maxsplit=1)[0].strip().lower()
            index.setdefault((section, key), n)
    return index


class Reader:
    """Collects issues while reading one file."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.lines = _line_index(text)
        self.issues: list[ConfigIssue] = []

    def add(self, section: str | None, key: str | None, value: str | None, message: str) -> None:
        line = None
        if section is not None:
            line = self.lines.get((section, key)) if key else None
            if line is None and key is not None:
                line = self.lines.get((DEFAULT, key))
            if line is None:
                line = self.lines.get((section, None))
        self.issues.append(ConfigIssue(self.path, message, section, key, value, line))
