# cython: language_level=3
"""C passes over tick arrays for the aggregator worker and the connectors.

One pass in C sorts out what the Python caller needs, so that Python touches
each message or (exchange, symbol) once instead of each tick: a book feed sends
tens of level records per message, and numpy calls on the strided fields of a
structured array cost microseconds each, more than the records themselves.
"""
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcmp
from cpython.bytes cimport PyBytes_FromStringAndSize
cimport numpy as cnp
import numpy as np

from hftsig.market import ticks as _ticks

cnp.import_array()

from hftsig._ext.tick cimport (
    Tick, check_tick_layout, KIND_QUOTE, KIND_TRADE, KIND_BOOK_DELTA, KIND_BOOK_SNAPSHOT,
    KIND_PRICE, KIND_STATUS, FLAG_LAST)

check_tick_layout(_ticks)  # byte for byte TICK_DTYPE, same codes


cdef inline bint _same_key(Tick* a, Tick* b) noexcept nogil:
    return a.exchange == b.exchange and memcmp(a.symbol, b.symbol, 16) == 0


cdef inline Py_ssize_t _find(Tick* t, Py_ssize_t* keys, Py_ssize_t nkeys, Tick* r,
                             Py_ssize_t hint) noexcept nogil:
    """Index in ``keys`` (tick indices carrying each key) of ``r``'s key, or -1."""
    cdef Py_ssize_t j
    # consecutive records of a feed mostly share their key: try the last hit first
    if 0 <= hint < nkeys and _same_key(&t[keys[hint]], r):
        return hint
    for j in range(nkeys):
        if _same_key(&t[keys[j]], r):
            return j
    return -1


cdef inline bytes _symbol(Tick* r):
    cdef Py_ssize_t n = 0
    while n < 16 and r.symbol[n] != 0:
        n += 1
    return PyBytes_FromStringAndSize(r.symbol, n)


def scan_chunk(cnp.ndarray ticks):
    """Sort a contiguous TICK_DTYPE chunk into what the state update needs.

    Returns
    -------
    books : list of tuple
        ``(exchange, symbol, last_index, ts_event, ts_recv)`` per (exchange,
        symbol) with book records, in order of first appearance; the times are
        those of its last book record.
    quotes : list of tuple
        ``(exchange, symbol, bid_px, bid_sz, ask_px, ask_sz, ts_event,
        ts_recv)`` per (exchange, symbol) with quotes: the quote a record-by-record
        update ends on (newest ``ts_recv``, the last one among equals).
    others : list of int
        Indices of the trade, price and status records, in order.
    """
    if ticks.dtype != _ticks.TICK_DTYPE or ticks.ndim != 1 or not ticks.flags.c_contiguous:
        raise TypeError("ticks must be a 1-d C-contiguous TICK_DTYPE array")
    cdef Tick* t = <Tick*>cnp.PyArray_DATA(ticks)
    cdef Py_ssize_t n = ticks.shape[0], i, j
    cdef Py_ssize_t nb = 0, nq = 0, hb = -1, hq = -1
    cdef Py_ssize_t* bkey = <Py_ssize_t*>malloc(4 * (n + 1) * sizeof(Py_ssize_t))
    if bkey == NULL:
        raise MemoryError()
    cdef Py_ssize_t* blast = bkey + (n + 1)
    cdef Py_ssize_t* qkey = blast + (n + 1)
    cdef Py_ssize_t* qbest = qkey + (n + 1)
    cdef Tick* r
    cdef uint8_t kind
    others = []
    try:
        for i in range(n):
            r = &t[i]
            kind = r.kind
            if kind == KIND_BOOK_DELTA or kind == KIND_BOOK_SNAPSHOT:
                j = _find(t, bkey, nb, r, hb)
                if j < 0:
                    j = nb
                    bkey[nb] = i
                    nb += 1
                blast[j] = i
                hb = j
            elif kind == KIND_QUOTE:
                j = _find(t, qkey, nq, r, hq)
                if j < 0:
                    j = nq
                    qkey[nq] = i
                    qbest[nq] = i
                    nq += 1
                elif r.ts_recv >= t[qbest[j]].ts_recv:
                    qbest[j] = i
                hq = j
            else:
                others.append(i)
        books = []
        for j in range(nb):
            r = &t[blast[j]]
            books.append((r.exchange, _symbol(r), blast[j], r.ts_event, r.ts_recv))
        quotes = []
        for j in range(nq):
            r = &t[qbest[j]]
            quotes.append((r.exchange, _symbol(r), r.bid_px, r.bid_sz, r.ask_px, r.ask_sz,
                           r.ts_event, r.ts_recv))
    finally:
        free(bkey)
    return books, quotes, others


def batch_latency(cnp.ndarray ticks, int64_t now_ns):
    """Latencies of one connector message (a batch of records sharing its times).

    Returns
    -------
    wire : int or None
        ``ts_recv - ts_event`` (ns) of the last record that is not a status
        record (a connection event has no exchange time); None if there is none.
    queue : int
        ``now_ns - ts_recv`` (ns) of the last record.
    newest : int
        The largest ``ts_recv`` (0 for an empty batch).
    """
    if ticks.dtype != _ticks.TICK_DTYPE or ticks.ndim != 1 or not ticks.flags.c_contiguous:
        raise TypeError("ticks must be a 1-d C-contiguous TICK_DTYPE array")
    cdef Tick* t = <Tick*>cnp.PyArray_DATA(ticks)
    cdef Py_ssize_t n = ticks.shape[0], i
    cdef int64_t newest = 0, queue = 0
    wire = None
    for i in range(n):
        if t[i].ts_recv > newest:
            newest = t[i].ts_recv
    for i in range(n - 1, -1, -1):
        if t[i].kind != KIND_STATUS:
            wire = t[i].ts_recv - t[i].ts_event
            break
    if n:
        queue = now_ns - t[n - 1].ts_recv
    return wire, queue, newest


def select(cnp.ndarray ticks, bytes kinds, bytes exchanges, symbols):
    """Mask of the records passing a consumer's filters.

    ``kinds`` and ``exchanges`` are 256-byte tables (non-zero: wanted code) or
    empty (no filter); ``symbols`` is a set of symbol bytes or None.

    Returns
    -------
    mask : ndarray of bool
    kept : int
    """
    if ticks.dtype != _ticks.TICK_DTYPE or ticks.ndim != 1 or not ticks.flags.c_contiguous:
        raise TypeError("ticks must be a 1-d C-contiguous TICK_DTYPE array")
    if len(kinds) not in (0, 256) or len(exchanges) not in (0, 256):
        raise ValueError("kinds and exchanges must be 256-byte tables or empty")
    cdef Tick* t = <Tick*>cnp.PyArray_DATA(ticks)
    cdef Py_ssize_t n = ticks.shape[0], i, kept = 0
    cdef const unsigned char* kt = kinds
    cdef const unsigned char* et = exchanges
    cdef bint use_k = len(kinds) == 256, use_e = len(exchanges) == 256
    cdef bint ok
    mask = np.zeros(n, dtype=np.bool_)
    cdef cnp.uint8_t[::1] m = mask.view(np.uint8)
    for i in range(n):
        ok = (not use_k or kt[t[i].kind]) and (not use_e or et[t[i].exchange])
        if ok and symbols is not None:
            ok = _symbol(&t[i]) in symbols
        if ok:
            m[i] = 1
            kept += 1
    return mask, kept


def message_parts(cnp.ndarray ticks):
    """Split a parsed message into runs of one symbol each.

    A run ends where the symbol changes or after a ``FLAG_LAST`` record (one
    Kraken book message may carry several pairs, each ending with its
    checksum).

    Returns
    -------
    list of tuple
        ``(start, stop, symbol, first_kind, last_checksum)`` per run.

    Examples
    --------
    >>> from hftsig.market.ticks import empty_ticks, FLAG_LAST
    >>> t = empty_ticks(3)
    >>> t["symbol"] = [b"A", b"A", b"B"]
    >>> t["kind"] = 3
    >>> t["checksum"] = [0, 7, 9]
    >>> t["flags"] = [0, FLAG_LAST, FLAG_LAST]
    >>> message_parts(t)
    [(0, 2, b'A', 3, 7), (2, 3, b'B', 3, 9)]
    """
    if ticks.dtype != _ticks.TICK_DTYPE or ticks.ndim != 1 or not ticks.flags.c_contiguous:
        raise TypeError("ticks must be a 1-d C-contiguous TICK_DTYPE array")
    cdef Tick* t = <Tick*>cnp.PyArray_DATA(ticks)
    cdef Py_ssize_t n = ticks.shape[0], i, start = 0
    parts = []
    for i in range(n):
        if i + 1 == n or (t[i].flags & FLAG_LAST) or not _same_key(&t[i], &t[i + 1]):
            parts.append((start, i + 1, _symbol(&t[start]), t[start].kind, t[i].checksum))
            start = i + 1
    return parts
