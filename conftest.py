"""Collection rules for the whole tree (pytest runs doctests of every hftsig module)."""
import importlib.util


def _installed(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken or half-imported installation
        return False


# hftsig.signatures.torch is optional glue: without PyTorch its module cannot be imported,
# so its doctests are not collected (tests/signatures/test_torch.py skips too).
# The same for hftsig.signatures.jax without JAX (tests/signatures/test_jax.py skips too),
# and hftsig.distributed.on_dask without Dask (tests/distributed/test_on_dask.py skips too).
collect_ignore = [path for module, path in (("torch", "hftsig/signatures/torch.py"),
                                            ("jax", "hftsig/signatures/jax.py"),
                                            ("dask", "hftsig/distributed/on_dask.py"))
                  if not _installed(module)]
