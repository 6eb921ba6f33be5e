"""docs/architecture.md tells the truth about the tree.

* every module under ``hftsig/`` (``.py``) and every compiled source in
  ``hftsig/_ext`` (``.pyx``, ``.pxd``, ``.h``) is named in the file map;
* every repository path the page names exists (but for :data:`IN_FLIGHT`);
* the imports point the way its dependency diagram says: the market and
  signatures layers import nothing above them (function-level imports only
  where the page lists them), nothing outside ``hftsig/app`` imports the app,
  ``hftsig/_ext`` imports back only the tick and symbol tables, the
  simulators share no code with the market side.

Imports are read from the source with :mod:`ast` (and, for ``.pyx``/``.pxd``,
from their ``import``/``cimport`` statements), so nothing is imported and a
lazy import inside a function is seen as well as one at module level.
"""
import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hftsig"
DOC = ROOT / "docs" / "architecture.md"

#: paths the page names that other branches of the restructure (#17) add or
#: remove while this page is written; the check that a named path exists skips
#: them.  Whoever merges the last of those branches empties this list.
IN_FLIGHT = set()

#: the layers below the application's subpackages, and what they must not import
LOWER = ("hftsig/market/", "hftsig/signatures/", "hftsig/venues.py", "hftsig/_validation.py")
UPPER = ("hftsig.app", "hftsig.arbitrage", "hftsig.stopping", "hftsig.connectors",
         "hftsig.simulator", "hftsig.distributed")

#: (importing file, imported module): the upward imports inside functions that
#: the page documents (section "Dependencies"), each for a reason given there
LAZY_UPWARD = {
    ("hftsig/market/aggregator.py", "hftsig.distributed.bus"),
    ("hftsig/signatures/signature.py", "hftsig.distributed.on_dask"),
    ("hftsig/signatures/logsignature.py", "hftsig.distributed.on_dask"),
}

#: lower-layer modules that import the package root ``hftsig`` (which
#: re-exports every layer): leaves for optional frameworks, documented there
ROOT_IMPORTERS = {"hftsig/signatures/torch.py", "hftsig/signatures/jax.py"}

#: what hftsig/_ext may import from the public package: the tables it mirrors
EXT_ALLOWED = ("hftsig.market.ticks", "hftsig.market.symbols", "hftsig._ext",
               "hftsig.venues", "hftsig._validation")

#: what the simulators may import from hftsig: their kernels, signals, the registry
SIMULATOR_ALLOWED = ("hftsig.simulator", "hftsig._ext", "hftsig.interrupts", "hftsig.venues",
                     "hftsig._validation")


def _sources(*suffixes):
    return sorted(p for p in PACKAGE.rglob("*")
                  if p.suffix in suffixes and "__pycache__" not in p.parts and p.is_file())


def _rel(path):
    return path.relative_to(ROOT).as_posix()


def _module_names():
    """Dotted names of every module and package in the tree (.py, .pyx, .pxd)."""
    names = set()
    for p in _sources(".py", ".pyx", ".pxd"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.add(".".join(parts))
    return names


MODULES = _module_names()


def _target(module, name):
    """``from module import name``: the submodule when ``name`` is one."""
    sub = f"{module}.{name}"
    return sub if sub in MODULES else module


def _python_imports(path):
    """(imported module, at module level?, line) for every hftsig import of a .py file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            lazy = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                     ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, not in_function, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:  # relative: resolve against the file's package
                    base = list(path.relative_to(ROOT).parts[:-1])
                    base = base[:len(base) - child.level + 1]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module
                found.extend((_target(module, a.name), not in_function, child.lineno)
                             for a in child.names)
            visit(child, lazy)

    visit(tree, False)
    return [f for f in found if f[0] == "hftsig" or f[0].startswith(("hftsig.", "connectors"))]


_CY_FROM = re.compile(r"^[ \t]*from[ \t]+(hftsig[\w.]*)[ \t]+c?import[ \t]+(\([^)]*\)|[^\n]*)",
                      re.M)
_CY_IMPORT = re.compile(r"^[ \t]*c?import[ \t]+(hftsig[\w.]*)", re.M)


def _cython_imports(path):
    """Imported hftsig modules of a .pyx/.pxd file (import and cimport statements)."""
    text = path.read_text(encoding="utf-8")
    found = set()
    for m in _CY_FROM.finditer(text):
        names = m.group(2).strip("() \n").replace("\n", " ")
        for item in names.split(","):
            name = item.split(" as ")[0].strip()
            if name:
                found.add(_target(m.group(1), name))
    found.update(m.group(1) for m in _CY_IMPORT.finditer(text))
    return found


def _under(module, prefixes):
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _doc_text():
    return DOC.read_text(encoding="utf-8")


def _doc_paths():
    """Repository paths the page names in code spans (templates like <venue> left out)."""
    spans = re.findall(r"`([^`\n]+)`", _doc_text())
    paths = set()
    for span in spans:
        for word in re.findall(r"[\w./<>-]+", span):
            if (word.startswith(("hftsig/", "connectors/", "tests/", "docs/", "benchmarks/"))
                    and "<" not in word and ">" not in word):
                paths.add(word.rstrip("."))
    return paths


# -- the file map ---------------------------------------------------------------------------
def test_every_module_and_compiled_source_is_in_the_file_map():
    text = _doc_text()
    files = _sources(".py") + _sources(".pyx", ".pxd", ".h")
    assert len(files) > 60, "the package tree was not found"
    missing = [_rel(p) for p in files if f"`{_rel(p)}`" not in text]
    assert not missing, f"docs/architecture.md does not name {missing}"
    assert "`connectors/__init__.py`" in text  # the 0.1 top-level package, kept as a re-export


def test_every_path_the_page_names_exists():
    paths = _doc_paths()
    assert "hftsig/market/aggregator.py" in paths and "tests/data/real/" in paths
    absent = sorted(p for p in paths if not (ROOT / p).exists() and p not in IN_FLIGHT)
    assert not absent, f"docs/architecture.md names paths that do not exist: {absent}"


def test_in_flight_paths_are_named_on_the_page():
    # a path that no longer needs the exemption (it landed, or the page dropped it)
    # should leave the list rather than hide a typo later
    named = _doc_paths()
    assert IN_FLIGHT <= named, sorted(IN_FLIGHT - named)


def test_the_page_is_in_the_documentation_index():
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    toctrees = re.findall(r"```\{toctree\}\n(.*?)```", index, re.S)
    assert any(re.search(r"^architecture$", t, re.M) for t in toctrees)


def test_the_path_finder_sees_what_it_must():
    # the checks above can fail: a path in a code span is found, a template is not
    assert "hftsig/_ext/tick.pxd" in _doc_paths()
    assert not any("<" in p for p in _doc_paths())


# -- the dependency direction ---------------------------------------------------------------
def _lower_layer_files():
    return [p for p in _sources(".py") if _rel(p).startswith(LOWER)]


def test_market_and_signatures_import_nothing_above_them():
    files = _lower_layer_files()
    assert any(_rel(p) == "hftsig/market/aggregator.py" for p in files)
    eager, lazy = [], set()
    for path in files:
        for module, top_level, line in _python_imports(path):
            if _under(module, UPPER):
                if top_level:
                    eager.append(f"{_rel(path)}:{line} imports {module}")
                else:
                    lazy.add((_rel(path), module))
    assert not eager, eager
    undocumented = sorted(lazy - LAZY_UPWARD)
    assert not undocumented, (f"upward imports inside functions that docs/architecture.md does "
                              f"not list: {undocumented}")
    # the documented ones still exist (else the list and the page go stale)
    assert lazy == LAZY_UPWARD, sorted(LAZY_UPWARD - lazy)
    text = _doc_text()
    for importer, module in LAZY_UPWARD:
        assert f"`{importer}`" in text and f"`{module}`" in text


def test_lower_layers_do_not_import_the_package_root():
    importers = {_rel(p) for p in _lower_layer_files()
                 if any(m == "hftsig" for m, _, _ in _python_imports(p))}
    assert importers == ROOT_IMPORTERS
    text = _doc_text()
    assert all(f"`{p}`" in text for p in ROOT_IMPORTERS)


def test_market_and_signatures_are_independent():
    for path in _lower_layer_files():
        rel = _rel(path)
        other = ("hftsig.signatures" if rel.startswith("hftsig/market/") else
                 "hftsig.market" if rel.startswith("hftsig/signatures/") else None)
        if other:
            hits = [m for m, _, _ in _python_imports(path) if _under(m, (other,))]
            assert not hits, f"{rel} imports {hits}"


def test_nothing_outside_the_app_imports_it():
    offenders = []
    for path in _sources(".py") + sorted((ROOT / "connectors").glob("*.py")):
        rel = _rel(path)
        if rel.startswith("hftsig/app/") or rel == "hftsig/__main__.py":  # the entry point
            continue
        offenders += [f"{rel}:{line} imports {m}" for m, _, line in _python_imports(path)
                      if _under(m, ("hftsig.app",))]
    assert not offenders, offenders
    assert [m for m, _, _ in _python_imports(PACKAGE / "__main__.py")] == ["hftsig.app.cli"]


def test_compiled_kernels_import_only_the_tick_and_symbol_tables():
    seen = set()
    for path in _sources(".pyx", ".pxd"):
        if not _rel(path).startswith("hftsig/_ext/"):
            continue
        imported = _cython_imports(path)
        seen |= imported
        bad = sorted(m for m in imported if not _under(m, EXT_ALLOWED))
        assert not bad, f"{_rel(path)} imports {bad}"
    # what they import today: the parser must have found both tables and the Tick struct
    assert {"hftsig.market.ticks", "hftsig._ext.tick"} <= seen


def test_the_simulators_share_no_code_with_the_market_side():
    files = [p for p in _sources(".py") if _rel(p).startswith("hftsig/simulator/")]
    assert len(files) >= 8
    for path in files:
        bad = [m for m, _, _ in _python_imports(path) if not _under(m, SIMULATOR_ALLOWED)]
        assert not bad, f"{_rel(path)} imports {bad}"


@pytest.mark.parametrize("source, expected", [
    ("from hftsig.market import ticks as _ticks\n", {"hftsig.market.ticks"}),
    ("from hftsig._ext.tick cimport (\n    Tick,\n    FLAG_LAST)\n", {"hftsig._ext.tick"}),
    ("cimport hftsig._ext.tick\n", {"hftsig._ext.tick"}),
    ('"""\n    from the side go out first\n"""\n', set()),
])
def test_the_cython_import_reader(tmp_path, source, expected):
    path = tmp_path / "m.pyx"
    path.write_text(source, encoding="utf-8")
    assert _cython_imports(path) == expected


def test_the_python_import_reader_tells_lazy_from_module_level():
    path = PACKAGE / "market" / "aggregator.py"
    found = {(m, top) for m, top, _ in _python_imports(path)}
    assert ("hftsig.market.ticks", True) in found
    assert ("hftsig.distributed.bus", False) in found
