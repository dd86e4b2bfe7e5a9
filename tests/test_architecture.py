"""The import rules of docs/architecture.md, checked on the import graph.

Every module of the package is parsed (not imported); each ``import`` and ``from ... import``
is resolved to a module name and checked against the rules. A rule names who imports
(a package prefix), what it must not import, and whether only module-level imports count
(the CLI may import torch inside a command, never at import time)."""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "arcodec"
LAYERS = ("arcodec.codec", "arcodec.cli", "arcodec.training", "arcodec.evaluation", "arcodec.explore",
          "arcodec.pillow", "arcodec.zoo")


@dataclass(frozen=True)
class Import:
    importer: str  # module name, e.g. arcodec.codec.api
    imported: str  # resolved module (or module.attribute) name
    top_level: bool  # executed when the importer is imported (not inside a function or an if TYPE_CHECKING)
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[Import]:
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(), str(path))
    out = []

    def visit(node, top):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                visit(ast.Module(body=child.body, type_ignores=[]), False)  # never runs, but counts for the layers
                visit(ast.Module(body=child.orelse, type_ignores=[]), top)
                continue
            nested = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))  # runs when called
            if isinstance(child, ast.Import):
                out.extend(Import(name, a.name, top, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parent = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                out.append(Import(name, base, top, child.lineno))
                out.extend(Import(name, f"{base}.{a.name}", top, child.lineno) for a in child.names)
            visit(child, top and not nested)

    visit(tree, True)
    return out


GRAPH = [imp for p in sorted(PACKAGE.rglob("*.py")) for imp in _imports(p)]


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


# (who, must not import, only module-level imports count, why)
RULES = [
    ("arcodec.models", LAYERS + ("constriction", "torchvision", "PIL"), False,
     "models are architectures only: tensors in, distribution parameters out"),
    ("arcodec.exact", ("arcodec.models",) + LAYERS + ("constriction",), False,
     "the exact arithmetic is shared by models and codec and depends on neither"),
    ("arcodec.registry", LAYERS + ("constriction",), False, "the registry builds models; it knows no layer above"),
    ("arcodec.codec.container", ("torch", "numpy", "constriction") + LAYERS[1:], False,
     "the file format is readable without torch"),
    ("arcodec.codec", ("arcodec.cli", "arcodec.training", "arcodec.evaluation", "arcodec.explore",
                       "arcodec.pillow"), False, "the codec needs models and weights, nothing above"),
    ("arcodec.zoo", ("arcodec.codec", "arcodec.cli", "arcodec.training", "arcodec.evaluation",
                     "arcodec.explore", "arcodec.pillow"), False,
     "the zoo loads and verifies weights; exporting a training run is training's job"),
    ("arcodec.training", ("arcodec.cli", "arcodec.evaluation", "arcodec.pillow"), False,
     "training needs data and models"),
    ("arcodec.explore", ("arcodec.cli",), False, "the toolkit is a library"),
    ("arcodec.evaluation", ("arcodec.cli",), False, "evaluation is a library"),
    ("arcodec.pillow", ("arcodec.cli", "arcodec.training", "arcodec.explore", "arcodec.evaluation"), False,
     "the Pillow plugin reads and writes files through the codec"),
    ("arcodec.cli", ("torch", "constriction", "numpy"), True,
     "`arcodec --help` starts without loading torch"),
    ("arcodec.fixed", ("torch", "arcodec.exact", "arcodec.models") + LAYERS, False,
     "the exact arithmetic's tables are defined once, without torch"),
    *[(who, ("torch",), True, "a photo is coded and a digit decoded without importing torch (numpy engines)")
      for who in ("arcodec.models.local_layout", "arcodec.models.gated_layout", "arcodec.codec.engine",
                  "arcodec.codec.wavefront", "arcodec.codec.gated", "arcodec.codec.autoregressive",
                  "arcodec.codec.mixture", "arcodec.codec.plan", "arcodec.codec.coders", "arcodec.codec.api",
                  "arcodec.codec.pixelcnn_step", "arcodec.models.pixelcnn_layout",
                  "arcodec.registry", "arcodec.zoo")],
]


@pytest.mark.parametrize("who,banned,top_only,why", RULES, ids=[r[0] for r in RULES])
def test_import_rule(who, banned, top_only, why):
    broken = [f"{i.importer}:{i.line} imports {i.imported}" for i in GRAPH
              if _within(i.importer, who) and (i.top_level or not top_only)
              and any(_within(i.imported, b) for b in banned)]
    assert not broken, f"{why}:\n" + "\n".join(broken)


def test_only_the_entropy_module_imports_constriction():
    users = {i.importer for i in GRAPH if _within(i.imported, "constriction")}
    assert users == {"arcodec.codec.entropy"}


def test_nothing_imports_the_cli():
    users = {i.importer for i in GRAPH if _within(i.imported, "arcodec.cli")}
    assert {u for u in users if not _within(u, "arcodec.cli") and u != "arcodec.__main__"} == set()


def test_the_graph_is_read():
    """The rules above are only as good as the graph: it must see the known edges."""
    edges = {(i.importer, i.imported) for i in GRAPH}
    assert ("arcodec.codec.entropy", "constriction") in edges
    assert any(a == "arcodec.codec.api" and _within(b, "arcodec.zoo") for a, b in edges)
    assert len({i.importer for i in GRAPH}) >= 30


def test_cli_and_container_start_without_torch():
    """Imported for real, in a fresh interpreter: neither pulls in torch."""
    code = ("import sys, arcodec.cli, arcodec.codec.container; "
            "bad = [m for m in ('torch', 'constriction') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
