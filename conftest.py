"""Collection rules for the whole tree (pytest runs doctests of every hftsig module)."""
import importlib.util


def _installed(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken or half-imported installation
        return False


# hftsig.torch is optional glue: without PyTorch its module cannot be imported,
# so its doctests are not collected (tests/test_sigkernel_torch.py skips too).
collect_ignore = [] if _installed("torch") else ["hftsig/torch.py"]
