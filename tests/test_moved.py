"""The import paths from before the subpackages keep working, with a warning that names the new one."""
import importlib
import subprocess
import sys

import pytest

from hftsig import _moved


@pytest.mark.parametrize("old, new", sorted(_moved.MOVED.items()))
def test_old_module_path_is_the_new_module_and_warns(old, new):
    if new.endswith((".torch", ".jax", ".on_dask")):
        pytest.importorskip(new.rsplit(".", 1)[-1].replace("on_dask", "dask"))
    module = importlib.import_module(new)
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"^{old} moved to {new}; import it from there"):
        assert importlib.import_module(old) is module
    assert module.__name__ == new and module.__spec__.name == new  # its own spec survives


def test_old_paths_taught_by_the_readme_work_in_a_fresh_interpreter():
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "import hftsig\n"
        "from hftsig.normalize import Normalizer, MalformedMessage\n"  # no warning: see below
        "assert callable(hftsig.normalize) and not isinstance(hftsig.normalize, type(hftsig))\n"
        "warnings.simplefilter('ignore')\n"
        "from hftsig import paths, transforms\n"
        "from hftsig.cli import make_connectors\n"
        "from hftsig.stopping import SignatureStopper, PolynomialStopper\n"
        "from hftsig.arbitrage import TriangularArbitrage, DEFAULT_TAKER_FEES_BPS, quote_ticks\n"
        "from hftsig.aggregator import Aggregator\n"
        "from connectors import BinanceConnector, KrakenConnector\n"
        "import connectors.kraken, hftsig.connectors\n"
        "assert connectors.KrakenConnector is hftsig.connectors.KrakenConnector\n"
        "assert connectors.kraken is hftsig.connectors.kraken\n"
        "assert TriangularArbitrage is hftsig.CycleArbitrage\n"
        "assert paths is hftsig.processes and transforms is hftsig.augmentations\n"
        "assert make_connectors is hftsig.connectors.make_connectors\n"
        "assert Aggregator is hftsig.Aggregator\n"
        "assert hftsig.normalize('binance', b'{\"u\":1,\"s\":\"BNBUSDT\",\"b\":\"1\",\"B\":\"2\","
        "\"a\":\"3\",\"A\":\"4\"}')['ask_px'][0] == 3.0\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_old_attribute_of_the_package_warns():
    # in a fresh interpreter: once imported, the import system binds the old name
    # on the package and later lookups no longer pass through the package's __getattr__
    code = ("import warnings, hftsig\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    warnings.simplefilter('always')\n"
            "    assert hftsig.paths is hftsig.processes\n"
            "print([str(w.message).split(';')[0] for w in seen])\n"
            "try:\n"
            "    hftsig.nonexistent\n"
            "except AttributeError as exc:\n"
            "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["['hftsig.paths moved to hftsig.stopping.processes']",
                                       "module 'hftsig' has no attribute 'nonexistent'"]


def test_import_hftsig_does_not_load_scikit_learn_or_the_connectors():
    code = ("import sys, hftsig\n"
            "print(sorted(m for m in ('sklearn', 'hftsig.connectors', 'hftsig.app.cli') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
