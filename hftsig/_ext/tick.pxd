# The C view of one TICK_DTYPE record (hftsig/ticks.py), shared by every kernel
# that reads or writes tick arrays. Natural alignment leaves no padding: 104 bytes,
# the same as TICK_DTYPE.itemsize; each kernel checks that at import.
from libc.stdint cimport int8_t, int64_t, uint8_t, uint32_t

cdef struct Tick:
    int64_t ts_event
    int64_t ts_recv
    uint8_t exchange
    uint8_t kind
    int8_t side
    uint8_t flags
    uint32_t checksum
    char symbol[16]
    double bid_px
    double bid_sz
    double ask_px
    double ask_sz
    double price
    double size
    int64_t seq
    int64_t seq_first
