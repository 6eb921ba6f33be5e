"""CoinGecko REST simulator (``rest_url`` is the base including ``/api/v3``,
``http://127.0.0.1:PORT/api/v3``, as ``https://api.coingecko.com/api/v3`` is live).

- ``GET /api/v3/ping`` -> ``{"gecko_says":"(V3) To the Moon!"}``
- ``GET /api/v3/simple/price?ids=bitcoin,ethereum&vs_currencies=usd,btc``
  with ``include_last_updated_at``, ``include_24hr_vol``,
  ``include_24hr_change``, ``include_market_cap`` and ``precision``: prices
  from the market model, refreshed every ``refresh_s`` seconds (CoinGecko
  caches), ``last_updated_at`` the refresh time in epoch seconds; unknown ids
  are left out.
- ``GET /api/v3/simple/supported_vs_currencies``.
- API keys: with ``api_key=None`` no key is needed (keyless public access).
  With a key and ``key_type="demo"`` (the public host) the request needs the
  header ``x-cg-demo-api-key`` or the query ``x_cg_demo_api_key``; with
  ``key_type="pro"`` the header ``x-cg-pro-api-key`` or ``x_cg_pro_api_key``.
  Missing key: 401 error 10002; a pro key on the demo host: 401 error 10010;
  a demo key on the pro host: 401 error 10011; a wrong key: 401 error 10002.
  Error bodies are ``{"status":{"error_code":...,"error_message":...}}``.
- 429 carries no ``Retry-After`` (clients back off anyway).
"""
from __future__ import annotations

import json
import math
import time
import urllib.parse

__all__ = ["CoinGeckoServer", "COIN_IDS", "VS_CURRENCIES"]

#: asset -> CoinGecko coin id
COIN_IDS = {
    "BTC": "bitcoin",
    "ETH": "ethereum",
    "SOL": "solana",
    "USDT": "tether",
    "USDC": "usd-coin",
    "BNB": "binancecoin",
    "XRP": "ripple",
    "ADA": "cardano",
    "DOGE": "dogecoin",
    "LTC": "litecoin",
    "DOT": "polkadot",
    "LINK": "chainlink",
    "AVAX": "avalanche-2",
}
#: vs-currency -> asset of the model it is priced in
VS_CURRENCIES = {
    "usd": "USD", "eur": "EUR", "gbp": "GBP", "btc": "BTC", "eth": "ETH", "bnb": "BNB",
    "xrp": "XRP", "ltc": "LTC", "dot": "DOT", "link": "LINK", "sol": "SOL",
}

_ERR = '{"status":{"error_code":%d,"error_message":"%s"}}'


class CoinGeckoServer:
    name = "coingecko"
    #: what SimulatedExchanges.inject may do to this venue (a stall delays responses)
    FAULTS = ("http_429", "http_500", "http_malformed", "stall")
    REST_PATH = "/api/v3"

    @classmethod
    def from_settings(cls, model, settings):
        """The server SimulatedExchanges runs, from its ``settings`` (a dict)."""
        return cls(model, api_key=settings["api_key"], key_type=settings["key_type"],
                   refresh_s=settings["coingecko_refresh_s"])

    def __init__(self, model, *, api_key=None, key_type="demo", refresh_s=1.0):
        if key_type not in ("demo", "pro"):
            raise ValueError(f"key_type must be 'demo' or 'pro', got {key_type!r}")
        self.model = model
        self.api_key = api_key
        self.key_type = key_type
        self.refresh_s = float(refresh_s)
        self._cache = None
        self._cache_at = 0.0
        from hftsig.simulator.market import _START_USD

        self._fallback_usd = _START_USD

    def _usd(self, asset):
        if asset in self.model.assets:
            return self.model.usd_price(asset)
        return self._fallback_usd[asset]

    def _prices(self):
        now = time.time()
        if self._cache is None or now - self._cache_at >= self.refresh_s:
            usd = {}
            for a in list(self.model.assets) + [v for v in VS_CURRENCIES.values()]:
                if a in usd:
                    continue
                try:
                    usd[a] = self._usd(a)
                except KeyError:
                    continue
            self._cache = usd
            self._cache_at = now
        return self._cache, int(self._cache_at)

    def check_key(self, query, headers):
        """``None`` when the request may pass, else ``(status, headers, body)``."""
        demo = headers.get("x-cg-demo-api-key") or query.get("x_cg_demo_api_key")
        pro = headers.get("x-cg-pro-api-key") or query.get("x_cg_pro_api_key")
        if self.api_key is None:
            return None
        if self.key_type == "demo":
            if pro and not demo:
                return 401, {}, _ERR % (10010, "If you are using Pro API key, please change your root URL from api.coingecko.com to pro-api.coingecko.com")
            given = demo
        else:
            if demo and not pro:
                return 401, {}, _ERR % (10011, "If you are using Demo API key, please change your root URL from pro-api.coingecko.com to api.coingecko.com")
            given = pro
        if not given:
            return 401, {}, _ERR % (10002, "API Key Missing")
        if given != self.api_key:
            return 401, {}, _ERR % (10002, "Invalid API Key")
        return None

    def handle_rest(self, path, query, headers):
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
        if not path.startswith(self.REST_PATH + "/"):
            return 404, {}, '{"error":"Not Found"}'
        denied = self.check_key(q, headers)
        if denied is not None:
            return denied
        sub = path[len(self.REST_PATH):]
        if sub == "/ping":
            return 200, {}, '{"gecko_says":"(V3) To the Moon!"}'
        if sub == "/simple/supported_vs_currencies":
            return 200, {}, json.dumps(sorted(VS_CURRENCIES))
        if sub == "/simple/price":
            return self.simple_price(q)
        return 404, {}, '{"error":"Not Found"}'

    def simple_price(self, q):
        ids = [i.strip() for i in q.get("ids", "").split(",") if i.strip()]
        vs = [v.strip().lower() for v in q.get("vs_currencies", "").split(",") if v.strip()]
        if not vs:
            return 400, {}, '{"error":"Missing parameter vs_currencies"}'
        if not ids and not q.get("names") and not q.get("symbols"):
            return 400, {}, '{"error":"Missing parameter ids"}'
        flags = {k: q.get(k, "false").lower() == "true" for k in (
            "include_last_updated_at", "include_24hr_vol", "include_24hr_change", "include_market_cap")}
        precision = q.get("precision")
        usd, updated = self._prices()
        by_id = {cid: a for a, cid in COIN_IDS.items() if a in usd}
        out = {}
        for cid in ids:
            a = by_id.get(cid)
            if a is None:
                continue
            entry = {}
            for v in vs:
                va = VS_CURRENCIES.get(v)
                if va is None or va not in usd:
                    continue
                price = usd[a] / usd[va]
                if precision == "full":
                    val = price
                elif precision is not None and precision.isdigit():
                    val = round(price, int(precision))
                else:
                    # CoinGecko's default: about 6 significant digits below 1, 2+ decimals above.
                    digits = max(2, 6 - int(math.floor(math.log10(abs(price)))) - 1) if price > 0 else 2
                    val = round(price, min(digits, 16))
                entry[v] = val
                if flags["include_market_cap"]:
                    entry[v + "_market_cap"] = round(price * 19_000_000 * (1 if a == "BTC" else 120), 2)
                if flags["include_24hr_vol"]:
                    entry[v + "_24h_vol"] = round(price * 25_000, 2)
                if flags["include_24hr_change"]:
                    entry[v + "_24h_change"] = round(100.0 * (usd[a] / self._fallback_usd.get(a, usd[a]) - 1.0), 12)
            if flags["include_last_updated_at"]:
                entry["last_updated_at"] = updated
            out[cid] = entry
        return 200, {}, json.dumps(out, separators=(",", ":"))

    def rest_error(self, status, retry_after=None):
        if status == 429:
            # CoinGecko's 429 may come without Retry-After; the simulator never sends one.
            return 429, {}, _ERR % (429, "You've exceeded the Rate Limit. Please visit https://www.coingecko.com/en/api/pricing to subscribe to our API plans for higher rate limits.")
        return status, {}, _ERR % (status, "Internal Server Error")
