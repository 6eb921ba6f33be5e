"""Structured values drawn from a fuzzer's byte string.

The engines hand a harness raw bytes; harnesses that build structured input
(book records, websocket frames, signature arguments) take their choices from
the front of those bytes with :class:`Draw`.  Running out of bytes yields
zeros, so every byte string is a valid input and a shorter one is a simpler
one (what the minimizers need).
"""
from __future__ import annotations


class Draw:
    """Reads choices from ``data``, front to back."""

    __slots__ = ("data", "pos")

    def __init__(self, data):
        self.data = bytes(data)
        self.pos = 0

    def left(self):
        """Bytes not consumed yet."""
        return len(self.data) - self.pos

    def byte(self):
        """One byte (0 when the input is used up)."""
        if self.pos >= len(self.data):
            return 0
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uint(self, nbytes):
        """Unsigned integer from ``nbytes`` bytes, big endian."""
        v = 0
        for _ in range(nbytes):
            v = (v << 8) | self.byte()
        return v

    def below(self, n):
        """Integer in ``[0, n)``."""
        if n <= 1:
            return 0
        nbytes = (n.bit_length() + 7) // 8
        return self.uint(nbytes) % n

    def pick(self, options):
        """One element of a sequence."""
        return options[self.below(len(options))]

    def flag(self):
        """A boolean."""
        return bool(self.byte() & 1)

    def take(self, n):
        """Up to ``n`` raw bytes."""
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def rest(self):
        """Every byte left."""
        return self.take(self.left())
