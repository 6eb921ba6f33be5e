"""Reference data shipped with hftsig (package data, found wherever hftsig is installed).

The files live in ``hftsig/data/`` and are read with :mod:`importlib.resources`, so a
notebook, a test or a benchmark gets the same numbers from any working directory and
from a ``pip install``-ed hftsig, which has no ``tests/`` folder.

Examples
--------
>>> from hftsig.datasets import stopping_reference
>>> ref = stopping_reference()
>>> sorted(k for k in ref if not k.startswith("_"))
['american_put', 'fbm', 'max_call']
>>> case = ref["american_put"]["cases"][0]
>>> (case["S0"], case["sigma"], case["T"], case["fd"])
(36, 0.2, 1, 4.478)
"""
from __future__ import annotations

import json
from importlib import resources

__all__ = ["stopping_reference"]


def stopping_reference() -> dict:
    """Published reference values of optimal stopping problems.

    Returns
    -------
    dict
        A new dict on every call (callers may modify it), parsed from
        ``hftsig/data/stopping_reference.json``:

        - ``"american_put"``: Longstaff & Schwartz (2001), Table 1: ``"parameters"``
          (strike ``K``, rate ``r``, exercise dates a year) and ``"cases"``, one per
          (``S0``, ``sigma``, ``T``) with the finite-difference value ``fd`` and the
          simulated ``lsm`` value with its standard error ``lsm_se``.
        - ``"max_call"``: a Bermudan max-call on two assets (Glasserman 2004).
        - ``"fbm"``: stopping fractional Brownian motion, ``sup_tau E[W^H_tau]``:
          per Hurst parameter either a ``value`` or a ``lower``/``upper`` bracket.

        Every entry names its ``source`` and whether the number was ``confirmed``
        against a copy of it (``"_about"`` says how); an unconfirmed value must not
        be relied on.
    """
    text = (resources.files("hftsig") / "data" / "stopping_reference.json").read_text(
        encoding="utf-8")
    return json.loads(text)
