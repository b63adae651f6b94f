"""Imports go one way: entry points → domain → job core → models and db; no cycles.

Read from the source with ``ast`` (imports inside functions count too), so an
upward import fails here before anyone has to untangle it:

====  =================================================================  ==========================
layer packages                                                            may also not import
====  =================================================================  ==========================
0     ``wch.config``, ``wch.redact``, ``wch.logs``                         any other wch module
1     ``wch.db``, ``wch.models``, ``wch.runtime``, ``wch.migrations``,
      ``wch.whatsapp`` (the client knows neither Flask nor the database)  flask, sqlalchemy
2     ``wch.jobs`` (the job core)
3     ``wch.store``, ``wch.carts``, ``wch.messaging``, ``wch.staff``,      flask, ``wch.runtime``
      ``wch.monitoring`` (domain: settings come in as arguments)
4     ``wch.actors``, ``wch.web``, ``wch.admin``, ``wch.cli``
5     ``wch`` itself: the app factory
====  =================================================================  ==========================

A package imports its own modules, and lower layers. Within a layer, only the
pairs in :data:`SIDEWAYS` may import each other (store → carts → messaging).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "wch"

LAYERS = {
    "wch.config": 0, "wch.redact": 0, "wch.logs": 0,
    "wch.db": 1, "wch.models": 1, "wch.runtime": 1, "wch.migrations": 1, "wch.whatsapp": 1,
    "wch.jobs": 2,
    "wch.store": 3, "wch.carts": 3, "wch.messaging": 3, "wch.staff": 3, "wch.monitoring": 3,
    "wch.actors": 4, "wch.web": 4, "wch.admin": 4, "wch.cli": 4,
    "wch": 5,
}
# Imports allowed between two packages of the same layer.
SIDEWAYS = {
    ("wch.models", "wch.db"), ("wch.migrations", "wch.db"), ("wch.migrations", "wch.models"),
    ("wch.logs", "wch.redact"), ("wch.runtime", "wch.config"),
    ("wch.whatsapp", "wch.config"), ("wch.whatsapp", "wch.redact"),
    ("wch.store", "wch.carts"), ("wch.store", "wch.messaging"), ("wch.carts", "wch.messaging"),
    ("wch.monitoring", "wch.carts"), ("wch.monitoring", "wch.messaging"),
}
# Third-party (and wch) modules a package must not import.
FORBIDDEN = {
    "wch.config": {"flask", "sqlalchemy", "dramatiq"},
    "wch.redact": {"flask", "sqlalchemy", "dramatiq"},
    "wch.logs": {"flask", "sqlalchemy", "dramatiq"},
    "wch.whatsapp": {"flask", "flask_sqlalchemy", "sqlalchemy"},
    **{domain: {"flask", "wch.runtime"}
       for domain in ("wch.store", "wch.carts", "wch.messaging", "wch.staff", "wch.monitoring")},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (ROOT / relative).with_suffix(".py").is_file() or (ROOT / relative / "__init__.py").is_file()


def imports_of(source: str, *, package: str) -> set[str]:
    """Every module ``source`` imports, anywhere in it; ``from package import module`` counts as the module.

    ``package`` is the package the source belongs to, for relative imports.
    """
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if is_module(candidate) else base)
    return found


def component(name: str) -> str:
    """The package of LAYERS a wch module belongs to."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else name


def graph() -> dict[str, set[str]]:
    """Every wch module (migration scripts aside) and the modules it imports."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "versions" in path.parts:
            continue
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found[name] = imports_of(path.read_text(), package=package)
    return found


def violations(imports: dict[str, set[str]]) -> list[str]:
    found = []
    for name, targets in sorted(imports.items()):
        source = component(name)
        for target in sorted(targets):
            for forbidden in FORBIDDEN.get(source, ()):
                if target == forbidden or target.startswith(forbidden + "."):
                    found.append(f"{name} imports {target}: {source} must not depend on {forbidden}")
            if not (target == "wch" or target.startswith("wch.")):
                continue
            into = component(target)
            if into == source:
                continue
            if LAYERS[into] > LAYERS[source]:
                found.append(f"{name} imports {target}: upward, from layer {LAYERS[source]} ({source}) "
                             f"to layer {LAYERS[into]} ({into})")
            elif LAYERS[into] == LAYERS[source] and (source, into) not in SIDEWAYS:
                found.append(f"{name} imports {target}: sideways, between {source} and {into}")
    return found


def cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """Groups of wch modules that import each other, directly or around a loop (Tarjan's algorithm)."""
    edges = {name: sorted(t for t in targets if t in imports and t != name) for name, targets in imports.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_wch_package_has_a_layer():
    unplaced = {component(name) for name in graph()} - set(LAYERS)
    assert not unplaced, f"give these packages a layer in tests/test_layers.py: {sorted(unplaced)}"


def test_imports_go_one_way():
    assert violations(graph()) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


@pytest.mark.parametrize("source, target, kind", [
    ("wch.jobs.outbox", "wch.store.catalog", "upward"),
    ("wch.store.catalog", "wch.web.woocommerce", "upward"),
    ("wch.messaging.events", "wch.store.orders", "sideways"),
    ("wch.whatsapp.client", "wch.db", "sideways"),
    ("wch.carts.reminders", "wch.runtime", "must not depend on wch.runtime"),
    ("wch.whatsapp.client", "flask", "must not depend on flask"),
])
def test_the_check_catches_a_wrong_import(source, target, kind):
    imports = graph()
    imports[source] = imports[source] | {target}
    assert any(kind in line and line.startswith(f"{source} imports {target}") for line in violations(imports))


def test_the_check_catches_a_cycle():
    imports = graph()
    imports["wch.jobs.messages"] = imports["wch.jobs.messages"] | {"wch.jobs.outbox"}
    assert ["wch.jobs.messages", "wch.jobs.outbox"] in [sorted(set(c) & {"wch.jobs.messages", "wch.jobs.outbox"})
                                                         for c in cycles(imports)]


def test_the_graph_sees_imports_inside_functions_and_relative_ones():
    source = "def later():\n    from wch.web import woocommerce\n    import wch.db\n    from .outbox import relay\n"
    assert imports_of(source, package="wch.jobs") == {"wch.web.woocommerce", "wch.db", "wch.jobs.outbox"}
