"""The exchange connectors' former top-level package, kept importable.

The connectors live in :mod:`hftsig.connectors`; ``from connectors import
BinanceConnector`` and ``import connectors.binance`` still work and give the
same objects.
"""
import importlib
import pkgutil
import sys

from hftsig import connectors as _connectors
from hftsig.connectors import *  # noqa: F403 (the same public names)

__all__ = _connectors.__all__

# every module of hftsig.connectors answers as connectors.<name> too
for _module in pkgutil.iter_modules(_connectors.__path__):
    globals()[_module.name] = sys.modules[f"{__name__}.{_module.name}"] = \
        importlib.import_module(f"hftsig.connectors.{_module.name}")
