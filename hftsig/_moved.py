"""Old import paths of modules that moved into the domain subpackages.

``import hftsig.ticks`` and ``from hftsig.stopping import SignatureStopper``
were the paths before the package was split by domain (0.1 -> 0.2, see
CHANGES.md).  A finder on ``sys.meta_path`` answers the old names with the
module at its new place -- the same module object, so classes, isinstance
checks and pickles agree -- and warns once per name (DeprecationWarning)
with the new path.  Nothing is imported until an old name is asked for.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: old module name -> new module name
MOVED = {
    "hftsig.ticks": "hftsig.market.ticks",
    "hftsig.symbols": "hftsig.market.symbols",
    "hftsig.book": "hftsig.market.book",
    "hftsig.aggregator": "hftsig.market.aggregator",
    "hftsig.recorder": "hftsig.market.recorder",
    "hftsig.signature": "hftsig.signatures.signature",
    "hftsig.logsignature": "hftsig.signatures.logsignature",
    "hftsig.signature_grad": "hftsig.signatures.gradients",
    "hftsig.signature_kernel": "hftsig.signatures.kernels",
    "hftsig.signature_kernel_sklearn": "hftsig.signatures.kernel_estimator",
    "hftsig.transformer": "hftsig.signatures.transformer",
    "hftsig.transforms": "hftsig.signatures.augmentations",
    "hftsig.torch": "hftsig.signatures.torch",
    "hftsig.jax": "hftsig.signatures.jax",
    "hftsig.paths": "hftsig.stopping.processes",
    "hftsig.arbitrage_live": "hftsig.arbitrage.live",
    "hftsig.cli": "hftsig.app.cli",
    "hftsig.demo": "hftsig.app.demo",
    "hftsig.liveview": "hftsig.app.liveview",
    "hftsig.doctor": "hftsig.app.doctor",
    "hftsig.bus": "hftsig.distributed.bus",
    "hftsig.on_dask": "hftsig.distributed.on_dask",
}


class _Alias(importlib.abc.Loader):
    """Loads an old name as the module at its new place."""

    def __init__(self, new):
        self.new = new

    def create_module(self, spec):
        module = importlib.import_module(self.new)
        self.spec = module.__spec__
        warnings.warn(f"{spec.name} moved to {self.new}; import it from there "
                      f"(the old path will be removed in a future release)",
                      DeprecationWarning, stacklevel=2)
        return module

    def exec_module(self, module):
        # the module already ran under its new name; the import system has
        # just given it the alias's spec, which must not replace its own
        module.__spec__ = self.spec


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Answers the names in :data:`MOVED` (and nothing else)."""

    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install():
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())


def alias_now(old, new):
    """Register ``old`` as a name of the (already importable) module ``new``,
    without a warning: for an old path whose package attribute is something
    else now (``hftsig.normalize``, the function)."""
    sys.modules.setdefault(old, importlib.import_module(new))
