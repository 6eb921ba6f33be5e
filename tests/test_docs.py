"""The documentation builds without a warning.

Sphinx builds docs/ (the Markdown guides through MyST, the API reference
through autodoc + numpydoc) into a temporary folder with ``-W --keep-going``:
any Sphinx or docutils warning (a broken link or anchor between guides, a
malformed docstring table, an unknown reference) fails the build.  numpydoc
reports a docstring section it does not know (whose text it then leaves out
of the page) as a Python ``UserWarning`` instead, so the build's stderr must
be empty as well.
"""
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _build(tmp_path, source=DOCS):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env["PYTHONWARNINGS"] = "always::UserWarning:numpydoc.docscrape"
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q",
         "-d", str(tmp_path / "doctrees"), str(source), str(tmp_path / "html")],
        capture_output=True, text=True, env=env, timeout=280)


def test_docs_build_without_warnings(tmp_path):
    proc = _build(tmp_path)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert proc.stderr.strip() == "", proc.stderr[-6000:]
    html = tmp_path / "html"
    # every guide and every API page was written, the module reference included
    for page in ("index", "signatures", "signature_kernels", "market_data", "aggregator",
                 "arbitrage", "stopping", "cli", "benchmarks", "design", "fuzzing",
                 "api/index", "api/signatures", "api/market_data", "api/aggregator",
                 "api/arbitrage", "api/stopping"):
        assert (html / f"{page}.html").is_file(), page
    reference = (html / "api" / "signatures.html").read_text(encoding="utf-8")
    assert 'id="hftsig.signatures.signature.sig"' in reference
    assert 'id="hftsig.signatures.transformer.SignatureTransformer"' in reference
    # numpydoc rendered the Parameters section as a field list
    assert "Parameters" in reference and "field-list" in reference


def test_docs_build_fails_on_a_broken_anchor(tmp_path):
    # the check above can fail: a guide linking to a section that does not
    # exist is a warning, hence a failed build
    source = tmp_path / "src"
    source.mkdir()
    (source / "conf.py").write_text(
        'extensions = ["myst_parser"]\nmyst_heading_anchors = 3\n', encoding="utf-8")
    (source / "index.md").write_text(
        "# Index\n\n```{toctree}\nother\n```\n\nSee [other](other.md#no-such-section).\n",
        encoding="utf-8")
    (source / "other.md").write_text("# Other\n\n## A section\n", encoding="utf-8")
    proc = _build(tmp_path, source)
    assert proc.returncode != 0
    assert "no-such-section" in proc.stderr
