"""The shape of the code, checked by reading it: layers, no import circles, thin operators, short
functions, and one table of config keys behind `dmi keys` and README."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "dmi_provider"
PLAIN = ("registry/", "tracking/", "verify/", "config.py", "config_keys.py", "config_verify.py", "spec.py",
         "pipeline.py", "mirror.py", "errors.py", "tags.py", "plugins/charts.py", "plugins/pages.py",
         "plugins/render.py")
MAX_LINES = 400  # a module of logic; spec.py, which holds the key table's texts, may be longer
MAX_PARAMETERS = 6


def modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        out[name] = ast.parse(path.read_text(), str(path))
    return out


def imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """Every module of ours that `name` imports, at any level (lazy imports count too)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                      for a in node.names}
    return {m for m in found if m in known and m != name}


def test_no_import_circle():
    trees = modules()
    graph = {name: imports(name, tree, set(trees)) for name, tree in trees.items()}
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != "open", f"import circle: {' -> '.join([*path, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_plain_layers_never_import_airflow():
    for name, tree in modules().items():
        relative = name.removeprefix("dmi_provider.").replace(".", "/")
        if not any(relative.startswith(p.removesuffix(".py").rstrip("/")) for p in PLAIN):
            continue
        for node in ast.walk(tree):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(m.split(".")[0] in ("airflow", "docker", "boto3") for m in mods), f"{name} imports {mods}"


def _code_strings(tree: ast.Module) -> list[str]:
    """String constants and names of a module, docstrings left out."""
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            out.append(node.value)
        elif isinstance(node, ast.Name):
            out.append(node.id)
        elif isinstance(node, ast.Attribute):
            out.append(node.attr)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out += [getattr(node, "module", None) or "", *(a.name for a in node.names)]
    return out


def test_operators_name_no_engine_no_target_and_make_no_registry_call():
    from dmi_provider.engines import ENGINES
    from dmi_provider.targets import TARGETS

    banned = {*ENGINES, *TARGETS, "Copier", "RegistryClient", "ClientPool", "head_manifest", "get_manifest",
              "EcrHook", "DockerHook", "docker_api", "dmi_provider.registry.copy", "dmi_provider.registry.client"}
    for path in (PACKAGE / "operators").glob("*.py"):
        names = _code_strings(ast.parse(path.read_text()))
        assert not banned & set(names), f"{path.name} mentions {sorted(banned & set(names))}"


def test_no_function_is_longer_than_60_lines():
    long = [f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
            for name, tree in modules().items() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60]
    assert long == []


def test_no_module_is_longer_than_400_lines():
    long = [f"{path.relative_to(ROOT)}: {n} lines" for path in sorted(PACKAGE.rglob("*.py"))
            if path.name != "spec.py" and (n := len(path.read_text().splitlines())) > MAX_LINES]
    assert long == []


def test_no_function_takes_more_than_6_parameters():
    """Values that travel together are one object (the spec, a run's hooks), not a longer parameter list."""
    many = []
    for name, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                given = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)
                         if a.arg not in ("self", "cls")]
                if len(given) > MAX_PARAMETERS:
                    many.append(f"{name}.{node.name}: {len(given)}")
    assert many == []


def test_the_lookups_match_the_config_choices():
    from dmi_provider import config
    from dmi_provider.cli import build_parser
    from dmi_provider.engines import ENGINES
    from dmi_provider.targets import TARGETS

    assert tuple(TARGETS) == config.TARGETS and tuple(ENGINES) == config.ENGINES
    copy = build_parser()._subparsers._group_actions[0].choices["copy"]  # type: ignore[union-attr]
    (engine,) = [a for a in copy._actions if a.dest == "engine"]
    assert tuple(engine.choices) == config.ENGINES


def test_readme_key_table_is_the_key_table():
    from dmi_provider.spec import KEY_TABLE, markdown_table

    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- keys:.*?-->\n(.*?)\n<!-- /keys -->", readme, re.S)
    assert found, "README has no key table between <!-- keys: --> and <!-- /keys -->"
    assert found.group(1) == markdown_table(), "README's key table differs: paste `dmi keys --markdown`"
    listed = subprocess.run([str(Path(sys.executable).with_name("dmi")), "keys"], capture_output=True, text=True,
                            check=True).stdout.splitlines()
    assert [line.split()[0] for line in listed] == [k.name for k in KEY_TABLE]


def test_every_key_is_one_field_of_the_spec_and_the_spec_nothing_else():
    """The spec's field metadata is the key table: each key is declared once, and every field of the tree is
    set by a key, worked out by the reader from keys (`derived`), or one of the few the reader names itself."""
    from dataclasses import fields

    from dmi_provider import config
    from dmi_provider.spec import KEY_TABLE, MirrorSpec, plain_fields

    names = [k.name for k in KEY_TABLE]
    assert len(names) == len(set(names)), "a key is declared twice"
    assert set(plain_fields()) == {"section", "dag_id", "env", "engine.queue"}
    # The reader works out exactly the derived fields, and nothing the table already sets.
    derived = {f"{part.name}.{f.name}" for part in fields(MirrorSpec) if "dmi.node" in part.metadata
               for f in fields(part.metadata["dmi.node"]) if "dmi.keys" in f.metadata}
    assert derived == {"source.repository", "target.repository", "selection.tags", "budget.pool"}
    source = Path(config.__file__).read_text()
    assert all(f'"{path}"' in source for path in derived)


def test_the_unit_lane_starts_no_service():
    """tests/unit imports none of the rig's services (registries, proxies, Airflow, clouds): `make test-unit`
    runs without them, in seconds."""
    allowed = {"tests.rig.images", "tests.rig.cli", "tests.rig.process", "tests.conftest"}  # process: free_port
    for path in sorted((ROOT / "tests" / "unit").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("tests.rig", "tests.integration",
                                                                                    "tests.system")):
                assert node.module in allowed, f"{path.name} imports {node.module}"
