"""The direction of imports between ntkflow's subpackages, read from every module's AST.

Layers (an arrow points from a layer to the layers it may import):

    ntkflow root helpers (``ntkflow._checks``, ``ntkflow.io``; usable by all)
      ← engine ← solvers ← manifolds ← ntk ← {cy, ricci} ← ntkflow.cli ← experiments

A module may import its own subpackage and every lower layer; cy and ricci do not import each other; nothing
in the product imports ``ntkflow.experiments``. Besides the direction:

- no function-local import of an ntkflow module (it hides cycles), except the entries of ``ALLOWED_LOCAL``,
  each deferring a heavy import with its reason;
- no private name (``_x``) imported from, or read as an attribute of, another ntkflow module (make it
  public in the module that owns it). Private *modules* (``ntkflow._checks``) are fine.

The checker is :func:`check_source`; the last tests feed it small synthetic sources so that it is seen to fail.
"""
from __future__ import annotations

import ast
import pathlib
from typing import NamedTuple

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: folder -> import name (pyproject's package-dir mapping)
FOLDERS = {"ntkflow": "ntkflow", "engine": "ntkflow.engine", "solvers": "ntkflow.solvers",
           "manifolds": "ntkflow.manifolds", "ntk": "ntkflow.ntk", "cy": "ntkflow.cy", "ricci": "ntkflow.ricci",
           "experiments": "ntkflow.experiments"}
#: subpackage -> rank; a module may import ranks <= its own (same rank: only its own subpackage)
RANK = {"root": 0, "engine": 1, "solvers": 2, "manifolds": 3, "ntk": 4, "cy": 5, "ricci": 5, "cli": 6,
        "experiments": 7}
#: (importing module, imported module, reason): function-local imports of ntkflow modules that are allowed
ALLOWED_LOCAL = (
    ("ntkflow", "ntkflow.cy",
     "ntkflow.load(): `import ntkflow` must not import the CY job (JAX curvature, matplotlib, every method)"),
)


class Violation(NamedTuple):
    module: str
    line: int
    rule: str
    detail: str

    def __str__(self):
        return f"{self.module}:{self.line}: [{self.rule}] {self.detail}"


def layer_of(module: str) -> str:
    """The layer of an ntkflow module name ("root" for ntkflow, ntkflow._* and ntkflow.io, "cli" for ntkflow.cli)."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1].startswith("_") or parts[1] == "io":
        return "root"
    if parts[1] == "cli":
        return "cli"
    return parts[1]


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(tree: ast.AST):
    """(node, local) for every import, local = inside a function body."""
    out = []

    def visit(node, local):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                out.append((child, local))
            visit(child, local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return out


def check_source(module: str, source: str, *, is_package: bool = False, modules: frozenset = frozenset(),
                 allowed_local=ALLOWED_LOCAL) -> list[Violation]:
    """Violations of the rules of this file's docstring in one module's source. ``modules``: the names of
    all ntkflow modules (to tell ``from ntkflow.cy import algebra``, a module, from an imported function)."""
    tree = ast.parse(source)
    me = layer_of(module)
    allowed = {(a, b) for a, b, _ in allowed_local}
    found: list[Violation] = []
    module_aliases = {}  # local name -> ntkflow module it is bound to
    for node, local in _imports(tree):
        targets = []  # (imported ntkflow module, names imported from it, bound aliases)
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "ntkflow" or a.name.startswith("ntkflow."):
                    targets.append((a.name, []))
                    module_aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else "ntkflow"
        else:
            src = _resolve(module, is_package, node)
            if not (src == "ntkflow" or src.startswith("ntkflow.")):
                continue
            names = []
            for a in node.names:
                sub = f"{src}.{a.name}"
                if sub in modules:  # `from pkg import submodule`: the submodule is imported
                    targets.append((sub, []))
                    module_aliases[a.asname or a.name] = sub
                else:
                    names.append(a.name)
            targets.append((src, names))
        for target, names in targets:
            them = layer_of(target)
            if them == "experiments" and me != "experiments":
                found.append(Violation(module, node.lineno, "layering",
                                       f"{module} imports {target}: the product never imports the experiments"))
            elif them != me and (RANK[them] > RANK[me] or RANK[them] == RANK[me]):
                if not (me == "root" and (module, target) in allowed and local):
                    found.append(Violation(module, node.lineno, "layering",
                                           f"{module} ({me}) imports {target} ({them}): {them} is not below {me}"))
            if local and (module, target) not in allowed and target != module:
                found.append(Violation(module, node.lineno, "local-import",
                                       f"function-local import of {target} (move it to the top of {module}, or add an "
                                       f"ALLOWED_LOCAL entry that names the heavy dependency it defers)"))
            for n in names:
                if n.startswith("_") and not n.startswith("__") and target != module:
                    found.append(Violation(module, node.lineno, "private-name",
                                           f"imports the private name {n} from {target} (make it public there)"))
    for node in ast.walk(tree):  # algebra._triu where algebra is another ntkflow module
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in module_aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")
                and module_aliases[node.value.id] != module):
            found.append(Violation(module, node.lineno, "private-name",
                                   f"reads the private name {node.attr} of {module_aliases[node.value.id]}"))
    unique, seen = [], set()
    for v in found:  # `from ntkflow.cy import job` imports ntkflow.cy and ntkflow.cy.job: report the statement once
        key = (v.line, v.rule) if v.rule != "private-name" else v
        if key not in seen:
            seen.add(key)
            unique.append(v)
    return unique


def package_modules() -> dict[str, tuple[pathlib.Path, bool]]:
    """ntkflow module name -> (file, is_package) for every .py file of the installed folders."""
    out = {}
    for folder, pkg in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([pkg, *parts])] = (path, path.name == "__init__.py")
    return out


def all_violations() -> list[Violation]:
    mods = package_modules()
    names = frozenset(mods)
    found = []
    for name, (path, is_pkg) in mods.items():
        found += check_source(name, path.read_text(), is_package=is_pkg, modules=names)
    return found


def _report(found):
    by_pkg = {}
    for v in found:
        by_pkg.setdefault(layer_of(v.module), []).append(str(v))
    return "\n".join(f"{pkg}: {len(vs)} violation(s)\n  " + "\n  ".join(vs) for pkg, vs in sorted(by_pkg.items()))


def test_every_module_is_found():
    mods = package_modules()
    for expected in ("ntkflow._checks", "ntkflow.engine.kernels.base", "ntkflow.manifolds.geometry", "ntkflow.cy.job",
                     "ntkflow.experiments.literal", "ntkflow.ricci"):
        assert expected in mods


@pytest.mark.parametrize("rule", ["layering", "local-import", "private-name"])
def test_package_follows_the_layering(rule):
    found = [v for v in all_violations() if v.rule == rule]
    assert not found, f"{len(found)} {rule} violation(s):\n{_report(found)}"


def test_allowed_local_imports_are_still_needed():
    # an allow-list entry that no longer matches anything is stale
    mods = package_modules()
    for importer, target, reason in ALLOWED_LOCAL:
        assert reason
        path, is_pkg = mods[importer]
        tree = ast.parse(path.read_text())
        hits = [n for n, local in _imports(tree) if local and isinstance(n, (ast.Import, ast.ImportFrom))
                and (target in [a.name for a in getattr(n, "names", [])] if isinstance(n, ast.Import)
                     else _resolve(importer, is_pkg, n) == target)]
        assert hits, f"ALLOWED_LOCAL entry ({importer}, {target}) matches no local import: remove it"


# ---- the checker fails on violations (synthetic sources) ---------------------------------------------------

MODS = frozenset({"ntkflow.cy", "ntkflow.cy.algebra", "ntkflow.cy.job", "ntkflow.manifolds", "ntkflow.manifolds.io",
                  "ntkflow.engine", "ntkflow.engine.operators", "ntkflow.experiments", "ntkflow.ricci"})


def _rules(module, src, **kw):
    return sorted(v.rule for v in check_source(module, src, modules=MODS, **kw))


def test_checker_flags_upward_and_sideways_imports():
    assert _rules("ntkflow.engine.x", "from ntkflow.cy import job\n") == ["layering"]
    assert _rules("ntkflow.manifolds.x", "import ntkflow.cy.algebra\n") == ["layering"]
    assert _rules("ntkflow.ricci.x", "from ntkflow.cy.algebra import pack\n") == ["layering"]
    assert _rules("ntkflow.cy.x", "from ntkflow.ricci import flow\n") == ["layering"]
    assert _rules("ntkflow.cy.x", "from ntkflow.experiments import literal\n") == ["layering"]
    assert _rules("ntkflow.manifolds.io", "from .. import cy\n") == ["layering"]  # relative, resolved
    # downward, same package, root helpers, and experiments importing the product are fine
    assert _rules("ntkflow.cy.x", "from ntkflow.manifolds import sample\nfrom ntkflow.engine import operators\n"
                  "from ntkflow._checks import positive_int\nfrom . import algebra\n") == []
    assert _rules("ntkflow.experiments.y", "from ntkflow.cy.job import run_cy\n") == []


def test_checker_flags_local_imports_and_private_names():
    src = "def f():\n    from ntkflow.manifolds import sample\n    return sample\n"
    assert _rules("ntkflow.cy.x", src) == ["local-import"]
    assert _rules("ntkflow.cy.x", "def f():\n    import numpy\n    import jax\n") == []  # not ntkflow modules
    assert _rules("ntkflow.cy.x", "from ntkflow.cy.job import _printer\n") == ["private-name"]
    assert _rules("ntkflow.cy.x", "from ntkflow.cy import algebra\nalgebra._triu(3)\n") == ["private-name"]
    assert _rules("ntkflow.cy.x", "from ntkflow.cy.job import __all__\n") == []  # dunder names are not private
    # the allow-list: the exact (module, target) pair only
    allow = (("ntkflow.cy.x", "ntkflow.engine.operators", "test"),)
    local = "def f():\n    from ntkflow.engine.operators import as_operator\n"
    assert _rules("ntkflow.cy.x", local, allowed_local=allow) == []
    assert _rules("ntkflow.cy.y", local, allowed_local=allow) == ["local-import"]
    # ntkflow.load's deferred import of the CY job (root importing the top layer, locally, allow-listed)
    assert _rules("ntkflow", "def load(d):\n    from ntkflow.cy import load\n") == []
    assert _rules("ntkflow", "from ntkflow.cy import load\n") == ["layering"]
