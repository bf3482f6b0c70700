"""The container images of Kubernetes manifests: every pod spec of every document, whatever its kind.

A pod spec is found by its shape, not by its kind (Deployment, CronJob, a CRD alike): any mapping holding a
`containers` list. Plain Python: PyYAML's safe loader only."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from dmi_provider.errors import DmiError

CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
STDIN = "-"
SUFFIXES = (".yaml", ".yml")


class ManifestError(DmiError):
    """Files that could not be read as YAML; one line per problem, each naming the file."""

    def __init__(self, problems: Iterable[str]):
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class ImageUse:
    """One container's image, and where it is."""

    file: str
    kind: str
    namespace: str | None
    name: str
    container: str
    list_name: str  # containers, initContainers or ephemeralContainers
    image: str
    problem: str | None = None  # the image field is not text

    @property
    def where(self) -> str:
        extra = "" if self.list_name == "containers" else f" ({self.list_name})"
        return f"{self.file}: {self.kind}/{self.name} container {self.container}{extra}"

    def to_dict(self) -> dict[str, str | None]:
        return {"file": self.file, "kind": self.kind, "namespace": self.namespace, "name": self.name,
                "container": self.container, "list": self.list_name}


def _objects(doc: Any) -> Iterator[Any]:
    """The objects of a document: a `kind: List` (or PodList, …) stands for its items."""
    if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
        for item in doc["items"]:
            yield from _objects(item)
    elif doc is not None:
        yield doc


def _pod_specs(obj: Any) -> Iterator[dict]:
    """Every mapping with a `containers` (or init, ephemeral) list, in document order. Each node is visited
    once: YAML aliases share nodes, and a document of nested aliases must not be walked exponentially."""
    seen: set[int] = set()
    stack = [obj]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            spec = any(isinstance(node.get(k), list) for k in CONTAINER_LISTS)  # `containers: null` still one
            if spec:
                yield node
            children = [v for k, v in node.items() if not (spec and k in CONTAINER_LISTS)]
        elif isinstance(node, list):
            children = node
        else:
            continue
        stack.extend(c for c in reversed(children) if isinstance(c, (dict, list)))


def _text(value: Any, fallback: str) -> str:
    return value if isinstance(value, str) and value else fallback


def _uses(file: str, obj: Any) -> Iterator[ImageUse]:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    kind = _text(obj.get("kind") if isinstance(obj, dict) else None, "(no kind)")
    name = _text(meta.get("name"), _text(meta.get("generateName"), "(no name)"))
    namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) else None
    for spec in _pod_specs(obj):
        for list_name in CONTAINER_LISTS:
            items = spec.get(list_name)
            for container in items if isinstance(items, list) else ():
                if not isinstance(container, dict) or container.get("image") is None:
                    continue  # a template may leave the image to be filled in
                image = container["image"]
                problem = None if isinstance(image, str) else f"the image field is not text: {image!r}"
                yield ImageUse(file, kind, namespace, name, _text(container.get("name"), "(no name)"), list_name,
                               image if isinstance(image, str) else str(image), problem)


def images_in(text: str, file: str) -> list[ImageUse]:
    """The images of one file's text; ManifestError when it is not YAML."""
    try:
        return [use for doc in yaml.safe_load_all(text) for obj in _objects(doc) for use in _uses(file, obj)]
    except yaml.YAMLError as exc:
        raise ManifestError([_yaml_problem(file, exc)]) from None
    except RecursionError:
        raise ManifestError([f"{file}: nested too deeply to read"]) from None


def _yaml_problem(file: str, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark is not None else file
    what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    return f"{where}: not valid YAML: {what}" + (f" ({context})" if context else "")


def _files(path: str) -> list[Path]:
    """A file, or a directory's YAML files (below it too), by name."""
    here = Path(path)
    if not here.is_dir():
        return [here]
    found = sorted(p for p in here.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    if not found:
        raise ManifestError([f"{path}: a directory without {', '.join(SUFFIXES)} files"])
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError([f"{path}: no such file"]) from None
    except UnicodeDecodeError:
        raise ManifestError([f"{path}: cannot read: not UTF-8 text"]) from None
    except OSError as exc:
        raise ManifestError([f"{path}: cannot read: {exc.strerror or exc}"]) from None


def read_manifests(paths: Sequence[str], stdin: TextIO | None = None) -> list[ImageUse]:
    """Every image of the files (`-`: standard input), in order; ManifestError names every file that could
    not be read, all at once."""
    uses: list[ImageUse] = []
    problems: list[str] = []
    for path in paths:
        try:
            if path == STDIN:
                uses += images_in((stdin or sys.stdin).read(), "<stdin>")
                continue
            for file in _files(path):
                uses += images_in(_read(file), str(file))
        except ManifestError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ManifestError(problems)
    return uses
