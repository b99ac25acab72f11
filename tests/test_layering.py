"""The package's layers: every import of one ipa unit (a subpackage or top-level module) names a
unit of its own layer or a lower one, never a higher one. docs/architecture.md draws the same
order; a new module joins a layer here."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ipa"

# lowest first; a unit may import units of its own layer and the layers below
LAYERS = (
    ("errors", "configuration", "records", "outputs", "processes"),  # shared value types, plumbing
    ("pipelines", "workloads", "predictors"),  # the catalogue, its profiles, load and its forecast
    ("optimizer", "sim", "profiling", "monitoring"),  # the ILP, the simulated pipeline, measuring
    ("policies", "serving"),  # decisions; the live processes that serve them
    ("k8s", "loadgen"),  # a cluster's objects; the load generator
    ("backends", "adapter"),  # where a pipeline runs; the loop that drives it
    ("runs", "calibration", "quality", "analysis"),  # experiments, their checks and figures
    ("cli",),  # the command line (ipa.cli and every ipa.cli_*)
)
LAYER_OF = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def unit_of(module: str) -> str:
    """The unit a dotted module name belongs to: ``ipa.serving.router`` -> ``serving``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "ipa"
    return "cli" if parts[1] == "cli" or parts[1].startswith("cli_") else parts[1]


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute ``ipa`` import in a file, function-level ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return [(line, m) for line, m in found if m == "ipa" or m.startswith("ipa.")]


def module_name(path: Path, root: Path = PACKAGE) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.parts[-1] == "__init__" else rel.parts
    return ".".join(parts)


def upward_edges(root: Path = PACKAGE) -> list[str]:
    edges = []
    for path in sorted(root.rglob("*.py")):
        src = unit_of(module_name(path, root))
        if src == "ipa":  # the package's own __init__ may name anything it exports
            continue
        for line, module in imports_of(path):
            dst = unit_of(module)
            if dst in (src, "ipa"):
                continue
            if LAYER_OF[dst] > LAYER_OF[src]:
                edges.append(f"{path.relative_to(root.parent)}:{line}: {src} (layer {LAYER_OF[src]}) imports "
                             f"{module} ({dst}, layer {LAYER_OF[dst]})")
    return edges


def test_every_unit_of_the_package_has_a_layer():
    units = {unit_of(module_name(p)) for p in PACKAGE.rglob("*.py")} - {"ipa"}
    assert units - set(LAYER_OF) == set(), "new units need a layer in LAYERS"
    assert set(LAYER_OF) - units == set(), "LAYERS names units that no longer exist"


def test_no_import_runs_up_a_layer():
    assert upward_edges() == []


def test_the_check_finds_an_upward_import(tmp_path):
    """The checker itself, on a two-file package: a monitor importing a backend is reported with
    its file and line; the backend importing the monitor is not."""
    pkg = tmp_path / "ipa"
    (pkg / "monitoring").mkdir(parents=True)
    (pkg / "backends").mkdir()
    (pkg / "monitoring" / "monitor.py").write_text("import math\n\nfrom ipa.backends.base import Thing\n")
    (pkg / "backends" / "base.py").write_text("from ipa.monitoring.monitor import x\n")
    edges = upward_edges(pkg)
    assert len(edges) == 1
    assert edges[0].startswith("ipa/monitoring/monitor.py:3: monitoring (layer 2) imports ipa.backends.base")


@pytest.mark.parametrize("module, unit", [("ipa.serving.router", "serving"), ("ipa.cli_run", "cli"),
                                          ("ipa.cli", "cli"), ("ipa.records", "records"), ("ipa", "ipa")])
def test_units_are_read_from_module_names(module, unit):
    assert unit_of(module) == unit
