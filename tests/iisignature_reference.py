"""iisignature 0.24, the reference the signature tests compare against, or its stored outputs.

iisignature builds only without build isolation (``pip install numpy`` first, then
``pip install --no-build-isolation iisignature==0.24``; ``make test`` does this), so a plain
``pip install ".[test]"`` does not bring it.  Without it, ``iisignature`` here answers each
call from ``tests/data/iisignature_outputs.npz``: the outputs iisignature 0.24 gave for the
exact inputs the tests pass (keyed by a hash of the function name and the argument bytes).
A call whose inputs were not recorded (another test order, other numpy or platform
arithmetic) skips its test with the install command as the reason, so a missing reference
never passes silently.

With iisignature installed, ``HFTSIG_RECORD_IISIGNATURE=1`` re-records the file from the
tests that run (every call is still answered by iisignature itself)::

    HFTSIG_RECORD_IISIGNATURE=1 python -m pytest -q tests/signatures/test_signature.py \\
        tests/signatures/test_logsignature.py tests/signatures/test_gradients.py tests/signatures/test_transformer.py
"""
from __future__ import annotations

import atexit
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

INSTALL = "pip install --no-build-isolation iisignature==0.24 (after numpy)"
STORE = Path(__file__).parent / "data" / "iisignature_outputs.npz"
# outputs larger than this are not stored (a few large batches would make up most of the
# file); their tests need iisignature itself
MAX_STORED_BYTES = 32_000

try:
    import iisignature as _iisignature
except ImportError:
    _iisignature = None

HAVE_IISIGNATURE = _iisignature is not None


class _Prepared:
    """What ``prepare`` returns here: iisignature's handle (when installed) and its arguments."""

    def __init__(self, handle, args):
        self.handle, self.args = handle, args


def _key(name, args):
    h = hashlib.sha256(name.encode())
    for a in args:
        if isinstance(a, _Prepared):
            h.update(b"prepared" + repr(a.args).encode())
        elif isinstance(a, (np.ndarray, np.generic)):
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        else:
            h.update(repr(a).encode())
    return h.hexdigest()[:32]


def _to_arrays(value):
    """An output as arrays and the kind of value to give back.

    iisignature returns arrays, tuples of arrays (the ``*backprop`` of two inputs), ints
    (``logsiglength``) and tuples of strings (``basis``).
    """
    if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
        return (np.array(value, dtype=str),), "strings"
    if isinstance(value, tuple):
        return tuple(np.asarray(v) for v in value), "tuple"
    if isinstance(value, int):
        return (np.asarray(value),), "int"
    return (np.asarray(value),), "array"


class _Reference:
    """The calls the tests make, each answered by iisignature or by its stored output."""

    def __init__(self):
        self.recording = HAVE_IISIGNATURE and os.environ.get("HFTSIG_RECORD_IISIGNATURE") == "1"
        self._stored = None
        self._recorded = {}
        if self.recording:
            atexit.register(self._save)

    def _store(self):
        if self._stored is None:
            self._stored = dict(np.load(STORE, allow_pickle=False)) if STORE.exists() else {}
        return self._stored

    def prepare(self, *args):
        return _Prepared(_iisignature.prepare(*args) if HAVE_IISIGNATURE else None, args)

    def _call(self, name, args):
        key = _key(name, args)
        if HAVE_IISIGNATURE:
            real = [a.handle if isinstance(a, _Prepared) else a for a in args]
            out = getattr(_iisignature, name)(*real)
            if self.recording:
                self._recorded[key] = _to_arrays(out)
            return out
        store = self._store()
        if f"{key}/0" not in store:
            pytest.skip(f"iisignature is not installed and no output of iisignature.{name} is "
                        f"stored for these inputs: {INSTALL}")
        parts = []
        while f"{key}/{len(parts)}" in store:
            parts.append(store[f"{key}/{len(parts)}"])
        kind = str(store[f"{key}/kind"])
        if kind == "tuple":
            return tuple(parts)
        if kind == "strings":
            return tuple(str(s) for s in parts[0])
        if kind == "int":
            return int(parts[0])
        return parts[0]

    def _save(self):
        entries = {}
        for key, (arrays, kind) in self._recorded.items():
            if sum(a.nbytes for a in arrays) > MAX_STORED_BYTES:
                continue
            for i, a in enumerate(arrays):
                entries[f"{key}/{i}"] = a
            entries[f"{key}/kind"] = np.array(kind)
        np.savez_compressed(STORE, **entries)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args: self._call(name, args)


iisignature = _Reference()
