"""The README's Python blocks run as written, and so do the user guides'.

Each ```python block of README.md runs in a fresh namespace, in order, in one
child process whose working directory is a temporary folder (blocks write
files such as ``data/ticks``).  Tracebacks point at the Markdown file's own
line numbers.  An audit hook in the child refuses any connection or name lookup
off the loopback interface, so a block that would reach a live exchange
fails instead of touching the internet.  Shell blocks (```bash) are not run.
"""
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

_FENCE = re.compile(r"^(\s*)```(\w*)\s*$")

# Runs in the child: every block in its own namespace, loopback only.
_RUNNER = r'''
import ipaddress, json, socket, sys, time, traceback

def _loopback_only(event, args):
    if event == "socket.getaddrinfo":
        host = args[0]
        if isinstance(host, bytes):
            host = host.decode()
        if host not in (None, "localhost", "") and not _is_loopback(host):
            raise ConnectionRefusedError(f"README test: no lookups off loopback ({host!r})")
    elif event == "socket.connect":
        addr = args[1]
        if isinstance(addr, tuple) and not _is_loopback(addr[0]):
            raise ConnectionRefusedError(f"README test: no connections off loopback ({addr!r})")

def _is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"

sys.addaudithook(_loopback_only)

job = json.load(sys.stdin)
timings = []
for start_line, code in job["blocks"]:
    # padded so that line numbers in tracebacks are the Markdown file's
    source = "\n" * (start_line - 1) + code
    t0 = time.monotonic()
    try:
        exec(compile(source, job["file"], "exec"), {"__name__": "__main__"})
    except BaseException:
        traceback.print_exc()
        print(f"{job['file']}: the block at line {start_line} failed", file=sys.stderr)
        sys.exit(1)
    timings.append((start_line, round(time.monotonic() - t0, 2)))
print("TIMINGS", json.dumps(timings))
'''


def readme_blocks(text):
    """``[(first code line number, code), ...]`` of the ```python blocks of ``text``."""
    blocks, lang, start, lines, indent = [], None, 0, [], ""
    for number, line in enumerate(text.splitlines(), start=1):
        fence = _FENCE.match(line)
        if lang is None:
            if fence:
                indent, lang, start, lines = fence.group(1), fence.group(2), number + 1, []
        elif line.strip() == "```":
            if lang == "python":
                blocks.append((start, "\n".join(lines) + "\n"))
            lang = None
        else:
            # a block inside a list item is indented like its fence
            lines.append(line[len(indent):] if line.startswith(indent) else line)
    assert lang is None, "README.md: a code block is not closed"
    return blocks


def test_readme_blocks_are_found():
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    # the tour: signatures + scikit-learn, ticks, aggregator, arbitrage, stopping
    assert len(blocks) >= 5
    joined = "".join(code for _, code in blocks)
    for name in ("hftsig.sig(", "SignatureTransformer", "hftsig.normalize(", "Aggregator(",
                 "CycleArbitrage(", "SignatureStopper("):
        assert name in joined, name


def test_block_parser_skips_shell_and_closes_fences():
    text = "x\n```bash\nmake demo\n```\n```python\na = 1\n\nb = 2\n```\n```\nplain\n```\n"
    assert readme_blocks(text) == [(6, "a = 1\n\nb = 2\n")]
    item = "- a list item:\n\n  ```python\n  if x:\n      y = 1\n  ```\n"
    assert readme_blocks(item) == [(4, "if x:\n    y = 1\n")]


def run_blocks(markdown, cwd):
    """Run every ```python block of ``markdown`` (a path) in a child process in ``cwd``."""
    blocks = readme_blocks(markdown.read_text(encoding="utf-8"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.setdefault("MPLBACKEND", "Agg")
    job = {"file": str(markdown.relative_to(ROOT)), "blocks": blocks}
    proc = subprocess.run([sys.executable, "-c", _RUNNER], input=json.dumps(job),
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-6000:]
    timings = json.loads(proc.stdout.rsplit("TIMINGS", 1)[1])
    assert [line for line, _ in timings] == [line for line, _ in blocks]


def test_readme_python_blocks_run(tmp_path):
    run_blocks(README, tmp_path)


# The guides whose examples are complete programs (signature_kernels.md shows
# fragments over the reader's own data, and framework code needing torch/jax).
GUIDES = ["signatures.md", "market_data.md", "aggregator.md", "arbitrage.md", "stopping.md"]


@pytest.mark.parametrize("guide", GUIDES)
def test_guide_python_blocks_run(guide, tmp_path):
    assert readme_blocks((ROOT / "docs" / guide).read_text(encoding="utf-8"))
    run_blocks(ROOT / "docs" / guide, tmp_path)


def _run_snippet(code, cwd):
    doc = cwd / "doc.md"
    doc.write_text("text\n```python\n" + code + "```\n", encoding="utf-8")
    job = {"file": "doc.md", "blocks": readme_blocks(doc.read_text(encoding="utf-8"))}
    return subprocess.run([sys.executable, "-c", _RUNNER], input=json.dumps(job),
                          capture_output=True, text=True, cwd=cwd, timeout=60)


def test_loopback_guard_refuses_the_internet(tmp_path):
    # the guard is what keeps a block from reaching a live exchange
    proc = _run_snippet("import socket\n"
                        "socket.socket().connect(('192.0.2.1', 443))\n", tmp_path)
    assert proc.returncode == 1
    assert "no connections off loopback" in proc.stderr
    assert 'File "doc.md", line 4' in proc.stderr          # the Markdown file's own line
    proc = _run_snippet("import socket\nsocket.getaddrinfo('example.com', 443)\n", tmp_path)
    assert proc.returncode == 1
    assert "no lookups off loopback ('example.com')" in proc.stderr
    proc = _run_snippet("import socket\nsocket.getaddrinfo('127.0.0.1', 443)\n", tmp_path)
    assert proc.returncode == 0, proc.stderr


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading (``## Make targets`` -> ``make-targets``)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_github_anchor():
    assert github_anchor("Make targets") == "make-targets"
    assert (github_anchor("Aggregator (`python -m benchmarks.aggregator`)")
            == "aggregator-python--m-benchmarksaggregator")


def test_readme_links_resolve():
    # Sphinx checks the links between the guides (tests/test_docs.py); the README
    # is not part of that build, so its links into docs/ are checked here.
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert len(local) >= 8
    for link in local:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.is_file(), link
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), re.M)
            assert anchor in {github_anchor(h) for h in headings}, link
