"""Beyond one machine (optional extras): ticks over Redis Streams between
processes and hosts (:mod:`~hftsig.distributed.bus`, extra ``bus``) and
signatures, simulation and optimal stopping on Dask
(:mod:`~hftsig.distributed.on_dask`, extra ``dask``).
"""
