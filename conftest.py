"""Collection rules for the whole tree (pytest runs doctests of every hftsig module)."""
import importlib.util


def _installed(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken or half-imported installation
        return False


# hftsig.torch is optional glue: without PyTorch its module cannot be imported,
# so its doctests are not collected (tests/test_sigkernel_torch.py skips too).
# The same for hftsig.jax without JAX (tests/test_sigkernel_jax.py skips too),
# and hftsig.on_dask without Dask (tests/test_on_dask.py skips too).
collect_ignore = [path for module, path in (("torch", "hftsig/torch.py"), ("jax", "hftsig/jax.py"),
                                            ("dask", "hftsig/on_dask.py"))
                  if not _installed(module)]
