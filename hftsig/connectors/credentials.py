"""API credentials from the environment, never printed.

Keys come from environment variables, or from a file named by
``HFTSIG_CREDENTIALS_FILE`` (``NAME=value`` lines with the same variable
names, ``#`` comments allowed; the environment wins over the file):

============================= ============================================
``HFTSIG_COINGECKO_API_KEY``  CoinGecko key (demo or pro)
``HFTSIG_COINGECKO_API_PLAN`` ``demo`` (default) or ``pro``
``HFTSIG_BINANCE_API_KEY``    Binance key; ``HFTSIG_BINANCE_API_SECRET``
``HFTSIG_KRAKEN_API_KEY``     Kraken key; ``HFTSIG_KRAKEN_API_SECRET``
``HFTSIG_COINBASE_API_KEY``   Coinbase key; ``HFTSIG_COINBASE_API_SECRET``
============================= ============================================

Public market data needs no key; only CoinGecko uses one here (for its
rate limits).  Every value is wrapped in :class:`Secret`, whose ``repr``
and ``str`` show ``'***'``; :func:`redact` scrubs known secret values and
key-like query parameters/headers from any text, and the ``connectors``
logger carries a filter applying it to every record.

Examples
--------
>>> s = Secret("abcd1234efgh")
>>> s
Secret('***')
>>> f"key={s}"
'key=***'
>>> s.reveal()
'abcd1234efgh'
>>> redact("GET /x?x_cg_demo_api_key=abcd1234efgh&ids=bitcoin")
'GET /x?x_cg_demo_api_key=***&ids=bitcoin'
"""
from __future__ import annotations

import hmac
import logging
import os
import re
import threading

from hftsig import venues

__all__ = ["Secret", "Credentials", "load_credentials", "redact", "RedactingFilter"]

_known = set()
_known_lock = threading.Lock()
# Shorter values would redact ordinary words; real API keys are far longer.
_MIN_REDACT_LEN = 6

_KEYLIKE = re.compile(
    r"(?i)((?:api[_-]?key|api[_-]?secret|secret|signature|x[_-]cg[_-](?:demo|pro)[_-]api[_-]key"
    r"|x-mbx-apikey|cb-access-key|cb-access-sign|api-sign|api-key|token|passphrase)"
    r"[\"']?\s*[=:]\s*[\"']?)([^\s&\"',;}]+)")


class Secret:
    """A string that does not show itself.

    ``repr``/``str``/``format`` give ``'***'``; :meth:`reveal` returns the
    value for the one place that needs it (a request header).  Pickling is
    refused so that a secret cannot leak through a queue or a file.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str | Secret) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError(f"Secret value must be a str, got {type(value).__name__}")
        value = value.strip()
        if not value:
            raise ValueError("Secret value must not be empty")
        object.__setattr__(self, "_value", value)
        if len(value) >= _MIN_REDACT_LEN:
            with _known_lock:
                _known.add(value)

    def __setattr__(self, name, value):
        raise AttributeError("Secret is immutable")

    def reveal(self) -> str:
        """The secret value itself."""
        return self._value

    def __repr__(self):
        return "Secret('***')"

    def __str__(self):
        return "***"

    def __format__(self, spec):
        return "***"

    def __eq__(self, other):
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self):
        return hash(("Secret", len(self._value)))

    def __reduce__(self):
        raise TypeError("Secret values cannot be pickled")

    def __bool__(self):
        return True


def redact(text: str) -> str:
    """Return ``text`` with every known secret and key-like parameter replaced by ``***``."""
    if not isinstance(text, str):
        text = str(text)
    with _known_lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, "***")
    return _KEYLIKE.sub(lambda m: m.group(1) + "***", text)


class RedactingFilter(logging.Filter):
    """Logging filter that formats the record, then redacts it (message and traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:
            msg = str(record.msg)
        record.msg = redact(msg)
        record.args = None
        if record.exc_info:
            # format the traceback now, redacted, and drop the live exception
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True


_filter = RedactingFilter()
# Logger filters apply only to records of that very logger: cover ours and the
# libraries that log URLs (a key pasted into a URL query would show there).
for _name in ("connectors", "urllib3.connectionpool", "websocket"):
    logging.getLogger(_name).addFilter(_filter)


class Credentials:
    """Credentials of one exchange: ``api_key``/``api_secret`` (:class:`Secret` or None).

    ``plan`` is CoinGecko's ``"demo"`` or ``"pro"`` (None for others).
    """

    __slots__ = ("exchange", "api_key", "api_secret", "plan")

    def __init__(self, exchange: str, api_key: str | Secret | None = None,
                 api_secret: str | Secret | None = None, plan: str | None = None) -> None:
        self.exchange = exchange
        self.api_key = None if api_key in (None, "") else Secret(api_key)
        self.api_secret = None if api_secret in (None, "") else Secret(api_secret)
        self.plan = plan

    def __repr__(self):
        return (f"Credentials({self.exchange!r}, api_key={self.api_key!r}, "
                f"api_secret={self.api_secret!r}, plan={self.plan!r})")

    def __bool__(self):
        return self.api_key is not None


def _read_file(path):
    values = {}
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.readlines()
    except OSError as exc:
        # the path is configuration, not a secret; the content never appears
        raise ValueError(f"HFTSIG_CREDENTIALS_FILE {path!r} cannot be read: {exc.strerror}") from None
    for i, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"HFTSIG_CREDENTIALS_FILE line {i}: expected NAME=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def load_credentials(exchange: str, environ: dict[str, str] | None = None) -> Credentials:
    """Credentials of ``exchange`` from ``environ`` (default ``os.environ``) and the file.

    Raises ``ValueError`` for an unknown exchange or a CoinGecko plan other
    than ``demo``/``pro``.

    >>> c = load_credentials("coingecko", {"HFTSIG_COINGECKO_API_KEY": "CG-abcdefgh"})
    >>> c
    Credentials('coingecko', api_key=Secret('***'), api_secret=None, plan='demo')
    """
    exchange = str(exchange).lower()
    if exchange not in venues.names():
        raise ValueError(f"exchange must be one of {venues.names()}, got {exchange!r}")
    env = os.environ if environ is None else environ
    values = {}
    path = env.get("HFTSIG_CREDENTIALS_FILE")
    if path:
        values.update(_read_file(path))
    values.update({k: v for k, v in env.items() if k.startswith("HFTSIG_")})
    # the variables the venue declares in the registry, by what they hold
    declared = {suffix: name for name in venues.get(exchange).credentials
                for suffix in ("API_KEY", "API_SECRET", "API_PLAN") if name.endswith("_" + suffix)}
    plan = None
    if "API_PLAN" in declared:
        plan = (values.get(declared["API_PLAN"]) or "demo").strip().lower()
        if plan not in ("demo", "pro"):
            # the value is not shown: a key pasted into the wrong variable would be
            raise ValueError(f"{declared['API_PLAN']} must be 'demo' or 'pro' (the value set is "
                             f"neither; not shown in case it is a key)")
    return Credentials(exchange, values.get(declared.get("API_KEY")),
                       values.get(declared.get("API_SECRET")), plan)
