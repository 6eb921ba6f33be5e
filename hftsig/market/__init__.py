"""Market data: the tick record, symbols, normalizers, order books, the
aggregator and Parquet recording/replay.

Data flows connector -> :mod:`~hftsig.market.normalize` (exchange message ->
:data:`~hftsig.market.ticks.TICK_DTYPE` records) ->
:mod:`~hftsig.market.aggregator` (books, consolidated quotes, one event API)
-> :mod:`~hftsig.market.recorder` (Parquet) and the consumers (arbitrage,
the bus, the live view).  Nothing here imports the connectors, the
simulators or the app.
"""
