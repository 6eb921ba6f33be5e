import numpy as np
import pytest

from hftsig.market import ticks as T


def test_dtype_layout_is_fixed_width():
    assert T.TICK_DTYPE.itemsize == 104
    assert T.TICK_DTYPE["symbol"] == np.dtype("S16")


def test_empty_ticks_defaults():
    t = T.empty_ticks(3)
    assert t.shape == (3,)
    assert np.isnan(t["bid_px"]).all() and np.isnan(t["size"]).all()
    assert (t["seq"] == -1).all() and (t["seq_first"] == -1).all()
    with pytest.raises(ValueError, match="n must be"):
        T.empty_ticks(-1)


def test_codes_round_trip_and_errors():
    for code, name in T.EXCHANGES.items():
        assert T.exchange_code(name) == code
        assert T.exchange_name(code) == name
    for code, name in T.KINDS.items():
        assert T.kind_code(name) == code
    with pytest.raises(ValueError, match="exchange"):
        T.exchange_code("mtgox")
    with pytest.raises(ValueError, match="kind"):
        T.kind_code("nope")


def test_to_pandas():
    t = T.empty_ticks(2)
    t["exchange"] = T.EXCHANGE_KRAKEN
    t["kind"] = T.KIND_TRADE
    t["symbol"] = b"BTC-USD"
    t["price"] = [100.0, 101.0]
    t["ts_event"] = [1_700_000_000_000_000_000, 1_700_000_000_000_000_001]
    df = T.to_pandas(t)
    assert list(df["exchange"]) == ["kraken", "kraken"]
    assert list(df["kind"]) == ["trade", "trade"]
    assert list(df["symbol"]) == ["BTC-USD", "BTC-USD"]
    assert df["price"].tolist() == [100.0, 101.0]
    assert str(df["ts_event"].dt.tz) == "UTC"
    with pytest.raises(TypeError, match="TICK_DTYPE"):
        T.to_pandas(np.zeros(2))


def test_symbols_read_as_str_without_pandas():
    t = T.empty_ticks(3)
    t["symbol"] = [b"BTC-USDT", b"ETH-BTC", b"ABCDEFGHIJ-KLMNO"]
    t["exchange"] = T.EXCHANGE_COINBASE
    t["kind"] = T.KIND_TRADE
    assert T.symbols(t).tolist() == ["BTC-USDT", "ETH-BTC", "ABCDEFGHIJ-KLMNO"]
    recs = T.as_records(t)
    assert recs.dtype == T.TICK_DTYPE and np.shares_memory(recs, t)  # a view, same layout
    tick = recs[2]
    assert isinstance(tick, T.Tick) and tick.symbol == "ABCDEFGHIJ-KLMNO"
    assert (tick.exchange_name, tick.kind_name) == ("coinbase", "trade")
    assert tick["symbol"] == b"ABCDEFGHIJ-KLMNO"  # the field itself stays bytes
    assert tick.exchange == T.EXCHANGE_COINBASE and np.isnan(tick.price)
    with pytest.raises(TypeError, match="TICK_DTYPE"):
        T.symbols(np.zeros(2))
    with pytest.raises(TypeError, match="TICK_DTYPE"):
        T.as_records(np.zeros(2))
