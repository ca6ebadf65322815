"""Market data for the API: instruments, candles from stored bars, and live quotes and books from the cache."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType

import orjson
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Scope

from tradestack.core.errors import ValidationFailedError
from tradestack.core.money import UNROUNDED, plain
from tradestack.domain.instruments import CATALOG, Instrument, Venue
from tradestack.domain.marketdata import Bar, Timeframe, aggregate
from tradestack.domain.snapshot import MarketSnapshot, QuoteView, decode_quote, snapshot_of
from tradestack.kit.runtime import Runtime, Slot
from tradestack.kit.web import prefetched
from tradestack.marketdata.calendars import trading_hours as trading_hours  # the one market-hours rule
from tradestack.marketdata.recent import CANDLE_CACHE, CandleCache, cached_candles
from tradestack.marketdata.repository import (
    BarRepository,
    InstrumentRepository,
    SeriesSummary,
    SeriesVersion,
    SQLiteBar,
    sqlite_time_parsed,
)

QUOTE_KEY = "md:quote:"
BOOK_KEY = "md:book:"
HEARTBEAT_KEY = "md:heartbeat"
# Every market event goes to this one bus channel (accounts' order, fill and portfolio updates go to their own,
# `trading.events.ACCOUNT_CHANNEL`); each API process subscribes once to both and routes messages to its WebSocket
# clients by the channel name that prefixes each message.
FANOUT_CHANNEL = "marketdata"
QUOTE_MESSAGES = b"quotes:"
"""How the bus messages of quotes start (their channel name): what the engine and the strategy runner subscribe to
(``Bus.subscribe(FANOUT_CHANNEL, starting=QUOTE_MESSAGES)``), so that books and candles do not wake them (orders, fills
and portfolios are on another bus channel, which they do not subscribe to)."""
MARKET_DATA_CHANNEL_KINDS = ("quotes", "candles", "orderbook")
"""The kinds of market-data channel a WebSocket client subscribes to (`MarketDataService.check_channel`)."""
MAX_SYMBOLS_PER_REQUEST = 100
MAX_CANDLES = 10_000
MAX_DEPTH = 50
_CATALOG_TTL_SECONDS = 30.0
_ONE_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Candles:
    """Candles of one symbol and timeframe, and the stored resolution they were built from."""

    symbol: str
    timeframe: Timeframe
    source_resolution: Timeframe
    bars: list[Bar]


class _Catalog:
    """Instruments by symbol, kept in process and reloaded from the database every 30 s.

    Read-only for its readers: a reload puts a new mapping in its place, never changes the one handed out (the
    last market snapshot is reused while the catalogue is the same object)."""

    def __init__(self) -> None:
        self.by_symbol: Mapping[str, Instrument] = MappingProxyType({})
        self.loaded_at = -math.inf


CATALOG_SLOT: Slot[_Catalog] = Slot("marketdata.catalog")


def encode_message(channel: str, frame: bytes) -> bytes:
    """A bus message: the channel name, a newline, then the WebSocket frame to forward as is."""
    return channel.encode() + b"\n" + frame


def decode_message(message: bytes) -> tuple[str, bytes]:
    """Split a bus message into (channel, frame)."""
    channel, _, frame = message.partition(b"\n")
    return channel.decode(), frame


def parse_cached_quote(raw: bytes | None) -> QuoteView | None:
    """A cached quote as a `QuoteView` (None when absent or unreadable): the one decoder of the quote cache."""
    if raw is None:
        return None
    try:
        return decode_quote(orjson.loads(raw))
    except orjson.JSONDecodeError:
        return None


def venue_of(instrument: Instrument, *, always_open: bool = False) -> Venue:
    """The venue whose calendar applies to `instrument` (`always_open`: the demo setting)."""
    return trading_hours(instrument.venue, always_open=always_open)


def split_symbols(text: str) -> list[str]:
    """The symbols of a comma-separated list, upper case, blanks and repeats left out (not checked)."""
    return list(dict.fromkeys(part.strip().upper() for part in text.split(",") if part.strip()))


@dataclass(frozen=True, slots=True)
class _LastSnapshot:
    """The last `MarketDataService.snapshot` of this process and what it was made of: the catalogue (the same object),
    the symbols read and their cached quotes as read.

    Made of the same quotes again (the order desk's next group, most often: a quote changes a few times a second,
    orders come hundreds of times), it is the same snapshot: decoding the quotes and working out the FX rates were
    ~5 % of the embedded order desk's CPU for one order (py-spy). A snapshot is immutable but for the memo of its
    marks, which holds only what its quotes give."""

    catalogue: Mapping[str, Instrument]
    wanted: list[str]
    raw: Sequence[bytes | None]
    snapshot: MarketSnapshot


_LAST_SNAPSHOT: Slot[_LastSnapshot] = Slot("marketdata.last_snapshot")


class MarketDataService:
    """Reads instruments and bars from the database and live values from the cache."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    # -- instruments ---------------------------------------------------------------------------

    async def seed_instruments(self) -> tuple[int, int]:
        """Make the built-in catalogue's instruments exist; returns (inserted, updated)."""
        async with self.runtime.database.session() as session:
            counts = await InstrumentRepository(session).upsert(CATALOG, self.runtime.clock.now())
        self._catalog().loaded_at = -math.inf
        return counts

    def _catalog(self) -> _Catalog:
        return self.runtime.components.get_or_create(CATALOG_SLOT, _Catalog)

    async def instruments(self) -> Mapping[str, Instrument]:
        """Every instrument by symbol (cached in process for 30 s)."""
        catalog = self._catalog()
        if self.runtime.clock.monotonic() - catalog.loaded_at > _CATALOG_TTL_SECONDS:
            async with self.runtime.database.read_session() as session:
                listed = await InstrumentRepository(session).list()
            catalog.by_symbol = MappingProxyType({i.symbol: i for i in listed})
            catalog.loaded_at = self.runtime.clock.monotonic()
        return catalog.by_symbol

    async def instrument(self, symbol: str) -> Instrument:
        """The instrument `symbol`; 422 naming the symbol when there is none."""
        known = await self.instruments()
        found = known.get(symbol) or known.get(symbol.upper())
        if found is None:
            raise ValidationFailedError(f"unknown symbol {symbol!r}: GET /api/market/instruments lists the symbols")
        return found

    async def parse_symbols(self, text: str) -> list[str]:
        """Comma-separated symbols, checked; 422 listing every unknown one."""
        symbols = split_symbols(text)
        if not symbols:
            raise ValidationFailedError("symbols: give one or more comma-separated symbols, e.g. AAPL,MSFT")
        if len(symbols) > MAX_SYMBOLS_PER_REQUEST:
            raise ValidationFailedError(f"symbols: at most {MAX_SYMBOLS_PER_REQUEST} per request, got {len(symbols)}")
        known = await self.instruments()
        unknown = [s for s in symbols if s not in known]
        if unknown:
            raise ValidationFailedError(f"unknown symbol(s): {', '.join(unknown)}; GET /api/market/instruments lists the symbols")
        return symbols

    # -- history -------------------------------------------------------------------------------

    async def series(self) -> list[SeriesSummary]:
        """Every stored series."""
        async with self.runtime.database.read_session() as session:
            return await BarRepository(session).summary()

    async def _candle_source(
        self, bars: BarRepository, symbol: str, timeframe: str, start: datetime | None, end: datetime | None, limit: int
    ) -> tuple[Instrument, Timeframe, Timeframe, SeriesVersion | None, datetime | None, datetime | None]:
        """Validate a candle request: (instrument, timeframe, stored resolution to build from, its series' version,
        start, end in UTC)."""
        instrument = await self.instrument(symbol)
        try:
            tf = Timeframe.parse(timeframe)
        except ValueError as exc:
            raise ValidationFailedError(f"timeframe: {exc}") from None
        if not 1 <= limit <= MAX_CANDLES:
            raise ValidationFailedError(f"limit: must be between 1 and {MAX_CANDLES}, got {limit}")
        start, end = _utc_or_none(start), _utc_or_none(end)
        if start is not None and end is not None and start >= end:
            raise ValidationFailedError(f"start ({start.isoformat()}) must be before end ({end.isoformat()})")
        versions = await bars.stored(instrument.symbol)
        stored = list(versions)
        if not stored:
            raise ValidationFailedError(
                f"no price history is stored for {instrument.symbol}; "
                "import some with `tradestack data import` or `tradestack data import-csv`"
            )
        usable = [r for r in stored if r.divides(tf)]
        if not usable:
            raise ValidationFailedError(
                f"{instrument.symbol} is stored at {', '.join(r.value for r in stored)}; "
                f"ask for a timeframe of at least {stored[0].value}"
            )
        base = max(usable, key=lambda r: r.seconds)
        return instrument, tf, base, versions[base], start, end

    async def candles(self, symbol: str, timeframe: str, *, start: datetime | None, end: datetime | None, limit: int) -> Candles:
        """Candles aggregated from the coarsest stored resolution that divides `timeframe`.

        With `start`: the first `limit` candles whose interval starts in [start, end). Without:
        the last `limit` candles starting before `end` (or the latest). Candles are always whole:
        a candle is never cut by `end` or by `limit`.
        """
        async with self.runtime.database.read_session() as session:
            bars = BarRepository(session)
            instrument, tf, base, _, start, end = await self._candle_source(bars, symbol, timeframe, start, end, limit)
            ratio = tf.seconds // base.seconds
            # Whole candles: the range is widened to candle boundaries.
            lo = None if start is None else _ceil(tf, start)
            hi = None if end is None else tf.floor(end - _ONE_MICROSECOND) + tf.delta
            if lo is not None:
                rows = await bars.between(instrument.symbol, base, lo, hi, limit * ratio)
                if ratio > 1 and len(rows) == limit * ratio:
                    # The last candle may be cut short by the row limit: complete it.
                    bucket_end = tf.floor(rows[-1].ts) + tf.delta
                    if hi is not None:
                        bucket_end = min(bucket_end, hi)
                    rows += await bars.between(instrument.symbol, base, rows[-1].ts + _ONE_MICROSECOND, bucket_end, None)
                candles = list(aggregate(rows, tf))[:limit]
            else:
                rows = await bars.last(instrument.symbol, base, limit * ratio, before=hi)
                if ratio > 1 and len(rows) == limit * ratio:
                    # The first candle may be cut short by the row limit: complete it.
                    rows = await bars.between(instrument.symbol, base, tf.floor(rows[0].ts), rows[0].ts, None) + rows
                candles = list(aggregate(rows, tf))[-limit:]
        return Candles(instrument.symbol, tf, base, candles)

    async def candles_json(
        self,
        symbol: str,
        timeframe: str,
        *,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        cache: CandleCache | None = None,
    ) -> bytes:
        """`candles` as the JSON body of ``GET /api/market/candles`` (the `CandleList` schema), built without objects per bar.

        PostgreSQL hands over each candle as text (`RawBar`), rolled up in the database (exact
        NUMERIC) when the timeframe is coarser than the one stored. SQLite hands over its stored
        text (`SQLiteBar`): a timeframe stored as such goes straight to JSON, a coarser one is
        rolled up by `aggregate_sqlite` (Decimal only for ties between floats and fractional volumes).
        Closed candles and whole answers come from `cache` (the process's `CANDLE_CACHE` by default)
        while the series' version read with the request says they are current (`tradestack.marketdata.recent`).
        """
        if cache is None:
            cache = self.runtime.components.get_or_create(CANDLE_CACHE, CandleCache)
        async with self.runtime.database.read_session() as session:
            bars = BarRepository(session)
            instrument, tf, base, version, start, end = await self._candle_source(bars, symbol, timeframe, start, end, limit)
            lo = None if start is None else _ceil(tf, start)
            hi = None if end is None else tf.floor(end - _ONE_MICROSECOND) + tf.delta
            asked = (instrument.symbol, base, tf, lo, hi, limit)
            if version is not None and (body := cache.answer(asked, version.answer_version)) is not None:
                return body

            async def fetch(lo: datetime | None, hi: datetime | None, limit: int) -> list[str]:
                return await _candles_text(bars, instrument.symbol, base, tf, lo, hi, limit)

            if version is None:  # a series written before its version row existed (not by `BarRepository`)
                candles = await fetch(lo, hi, limit)
            else:
                candles = await cached_candles(
                    cache, (instrument.symbol, base.value, tf.value), version.closed, fetch, lo, hi, limit
                )
        head = orjson.dumps({"symbol": instrument.symbol, "timeframe": tf.value, "source_resolution": base.value})
        body = b"".join((head[:-1], b',"candles":[', ",".join(candles).encode(), b"]}"))
        if version is not None:
            cache.keep_answer(asked, version.answer_version, body)
        return body

    # -- live values ---------------------------------------------------------------------------

    async def quotes_json(self, symbols: Sequence[str], scope: Scope | None = None) -> bytes:
        """``{"quotes": [...], "unavailable": [...]}`` straight from the cached, pre-serialised quotes.

        With the request's ``scope``, the quotes the rate-limit middleware read for it
        (`tradestack.kit.web.cache_prefetch`) are used instead of reading them again.
        """
        keys = [QUOTE_KEY + s for s in symbols]
        values = (prefetched(scope, keys) if scope is not None else None) or await self.runtime.cache.get_many(keys)
        found = [value for value in values if value is not None]
        missing = [s for s, value in zip(symbols, values, strict=True) if value is None]
        return b'{"quotes":[' + b",".join(found) + b'],"unavailable":' + orjson.dumps(missing) + b"}"

    async def quote_data(self, symbol: str) -> dict[str, object] | None:
        """The cached quote of `symbol` as published (decoded JSON), None when there is none or it is unreadable."""
        raw = await self.runtime.cache.get(QUOTE_KEY + symbol)
        if raw is None:
            return None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return data if isinstance(data, dict) else None

    async def snapshot(
        self, symbols: Iterable[str] = (), *, instruments: Mapping[str, Instrument] | None = None
    ) -> MarketSnapshot:
        """Quotes of `symbols` and of every currency pair (for the FX rates), read from the cache in one round trip."""
        catalogue = await self.instruments() if instruments is None else instruments
        pairs = [i.symbol for i in catalogue.values() if i.base_currency]
        wanted = list(dict.fromkeys([*symbols, *pairs]))
        raw = await self.runtime.cache.get_many([QUOTE_KEY + s for s in wanted]) if wanted else []
        last = self.runtime.components.get(_LAST_SNAPSHOT)
        if last is not None and last.catalogue is catalogue and last.wanted == wanted and last.raw == raw:
            return last.snapshot
        quotes = {
            symbol: quote for symbol, value in zip(wanted, raw, strict=True) if (quote := parse_cached_quote(value)) is not None
        }
        snapshot = snapshot_of(catalogue, quotes)
        self.runtime.components.put(_LAST_SNAPSHOT, _LastSnapshot(catalogue, wanted, raw, snapshot))
        return snapshot

    async def orderbook(self, symbol: str, depth: int) -> dict[str, list[object]]:
        """The latest L2 book of `symbol`, `depth` levels a side; 422 when none is being published."""
        instrument = await self.instrument(symbol)
        if not 1 <= depth <= MAX_DEPTH:
            raise ValidationFailedError(f"depth: must be between 1 and {MAX_DEPTH}, got {depth}")
        raw = await self.runtime.cache.get(BOOK_KEY + instrument.symbol)
        if raw is None:
            raise ValidationFailedError(f"no order book is being published for {instrument.symbol}")
        book: dict[str, list[object]] = orjson.loads(raw)
        book["bids"] = book["bids"][:depth]
        book["asks"] = book["asks"][:depth]
        return book

    async def feed_age_seconds(self) -> float | None:
        """Seconds since any feed last published (None when none ever did, or the mark expired)."""
        raw = await self.runtime.cache.get(HEARTBEAT_KEY)
        if raw is None:
            return None
        return max(0.0, self.runtime.clock.now().timestamp() - float(raw))

    async def check_channel(self, channel: str) -> str:
        """A market-data channel name, validated: ``quotes:SYM``, ``candles:SYM:TF`` or ``orderbook:SYM``."""
        kind, _, rest = channel.partition(":")
        if kind == "quotes" and rest:
            return f"quotes:{(await self.instrument(rest)).symbol}"
        if kind == "orderbook" and rest:
            return f"orderbook:{(await self.instrument(rest)).symbol}"
        if kind == "candles":
            symbol, _, timeframe = rest.rpartition(":")
            if symbol:
                try:
                    tf = Timeframe.parse(timeframe)
                except ValueError as exc:
                    raise ValidationFailedError(f"{channel}: {exc}") from None
                return f"candles:{(await self.instrument(symbol)).symbol}:{tf.value}"
        raise ValidationFailedError(
            f"unknown channel {channel!r}: use quotes:<SYMBOL>, candles:<SYMBOL>:<1m|5m|15m|1h|1d> or orderbook:<SYMBOL>"
        )


async def delete_bars(
    session: AsyncSession, symbol: str, resolution: Timeframe, start: datetime, end: datetime, *, dry_run: bool = False
) -> int:
    """Delete the bars of a series with start <= ts < end in `session`'s transaction (the series' versions change
    with them, see `BarRepository`); returns how many (with `dry_run`, how many would be, nothing deleted)."""
    bars = BarRepository(session)
    return await (bars.count if dry_run else bars.delete)(symbol, resolution, start, end)


_CANDLE_JSON = '{"ts":"%s","open":"%s","high":"%s","low":"%s","close":"%s","volume":"%s"}'
"""One candle of `CandleOut` (its values are digits, signs, points and ISO 8601 text: nothing to escape)."""


async def _candles_text(
    bars: BarRepository, symbol: str, base: Timeframe, tf: Timeframe, lo: datetime | None, hi: datetime | None, limit: int
) -> list[str]:
    """The candles (JSON text each) of a request, read from the database: with `lo` the first `limit` from `lo`
    (before `hi`), without the last `limit` before `hi`; `lo` and `hi` are candle boundaries."""
    if not bars.aggregates_in_sql:
        return await _sqlite_candles(bars, symbol, base, tf, lo, hi, limit)
    if tf != base:
        rows = await bars.raw_buckets(symbol, base, tf.seconds, lo, hi, limit, latest=lo is None)
    elif lo is not None:
        rows = await bars.raw_between(symbol, base, lo, hi, limit)
    else:
        rows = await bars.raw_last(symbol, base, limit, before=hi)
    return [_CANDLE_JSON % row[1:] for row in rows]


async def _sqlite_candles(
    bars: BarRepository, symbol: str, base: Timeframe, tf: Timeframe, lo: datetime | None, hi: datetime | None, limit: int
) -> list[str]:
    """The candles (JSON text each) of a request on SQLite: the stored rows read as text, rolled up when `tf` is coarser.

    With `lo`: the first `limit` candles from `lo` (before `hi`); without: the last `limit` before
    `hi`. A candle is never cut by the row limit: its missing rows are read.
    """
    ratio = tf.seconds // base.seconds
    if lo is not None:
        rows = await bars.sqlite_between(symbol, base, lo, hi, limit * ratio)
        if ratio > 1 and len(rows) == limit * ratio:
            # The last candle may be cut short by the row limit: complete it.
            last = sqlite_time_parsed(rows[-1][0])
            bucket_end = tf.floor(last) + tf.delta
            if hi is not None:
                bucket_end = min(bucket_end, hi)
            rows += await bars.sqlite_between(symbol, base, last + _ONE_MICROSECOND, bucket_end, None)
        if ratio == 1:
            return _sqlite_candles_json(rows)
        return [_CANDLE_JSON % candle for candle in aggregate_sqlite(rows, tf)[:limit]]
    rows = await bars.sqlite_last(symbol, base, limit * ratio, before=hi)
    if ratio == 1:
        return _sqlite_candles_json(rows)
    if len(rows) == limit * ratio:
        # The first candle may be cut short by the row limit: complete it.
        first = sqlite_time_parsed(rows[0][0])
        rows = await bars.sqlite_between(symbol, base, tf.floor(first), first, None) + rows
    return [_CANDLE_JSON % candle for candle in aggregate_sqlite(rows, tf)[-limit:]]


_SQLITE_CANDLE_JSON = '{"ts":"%sT%sZ","open":"%s","high":"%s","low":"%s","close":"%s","volume":"%s"}'


def _sqlite_candles_json(rows: Sequence[SQLiteBar]) -> list[str]:
    """Stored rows as candles (JSON text each): the ISO 8601 start is the stored text with a T and a Z, its
    microseconds left out when they are zero (as PostgreSQL's `to_char` in `BarRepository.raw_between`)."""
    return [
        _SQLITE_CANDLE_JSON % (ts[:10], ts[11:19] if ts.endswith(".000000") else ts[11:], o, h, l, c, v)
        for ts, o, h, l, c, v in rows  # noqa: E741 - the letters of OHLCV
    ]


_DAY_SECONDS = 86_400


def _clock(seconds_of_day: int) -> str:
    return f"{seconds_of_day // 3600:02d}:{seconds_of_day // 60 % 60:02d}:{seconds_of_day % 60:02d}"


def aggregate_sqlite(rows: Sequence[SQLiteBar], timeframe: Timeframe) -> list[tuple[str, str, str, str, str, str]]:
    """Roll time-ordered `SQLiteBar` rows up into candles of `timeframe`, like `domain.marketdata.aggregate`.

    open = first open, high = max high, low = min low, close = last close, volume = exact sum;
    each candle as (ISO start, open, high, low, close, volume) text. Made for thousands of rows a
    request, so per row: a row is placed by comparing its stored time text with its candle's
    bounds (fixed-width text sorts as time; a candle ending at midnight ends at ``24:00:00``, which
    sorts after the day's times and before the next day's); high and low are compared as floats
    (rounding keeps order, so only equal floats need Decimal); whole volumes are summed as ints.
    Every timeframe divides a day, so a candle's bounds are worked out within its day.
    """
    seconds = timeframe.seconds
    if _DAY_SECONDS % seconds:
        raise ValueError(f"{timeframe.value} does not divide a day")
    out: list[tuple[str, str, str, str, str, str]] = []
    bucket_start = bucket_end = iso = ""
    open_ = high_text = low_text = close = ""
    high = low = 0.0
    whole, fraction = 0, Decimal(0)
    for ts, o, h, l, c, v in rows:  # noqa: E741 - the letters of OHLCV
        if ts >= bucket_end:
            if iso:
                out.append((iso, open_, high_text, low_text, close, _sum_text(whole, fraction)))
            start = int(ts[11:13]) * 3600 + int(ts[14:16]) * 60 + int(ts[17:19])
            start -= start % seconds
            clock = _clock(start)
            bucket_start, bucket_end, iso = (
                f"{ts[:11]}{clock}.000000",
                f"{ts[:11]}{_clock(start + seconds)}.000000",
                f"{ts[:10]}T{clock}Z",
            )
            open_, high_text, low_text, close = o, h, l, c
            high, low = float(h), float(l)
            whole, fraction = 0, Decimal(0)
        elif ts < bucket_start:
            raise ValueError(f"bars are not in time order at {ts}")
        else:
            close = c
            value = float(h)
            if value > high or (value == high and Decimal(h) > Decimal(high_text)):
                high, high_text = value, h
            value = float(l)
            if value < low or (value == low and Decimal(l) < Decimal(low_text)):
                low, low_text = value, l
        if "." in v:
            fraction = UNROUNDED.add(fraction, Decimal(v))
        else:
            whole += int(v)
    if iso:
        out.append((iso, open_, high_text, low_text, close, _sum_text(whole, fraction)))
    return out


def _sum_text(whole: int, fraction: Decimal) -> str:
    """``whole + fraction`` as `plain` text, exactly."""
    return plain(UNROUNDED.add(fraction, whole)) if fraction else str(whole)


def _utc_or_none(value: datetime | None) -> datetime | None:
    """Naive datetimes are taken as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ceil(tf: Timeframe, ts: datetime) -> datetime:
    floor = tf.floor(ts)
    return floor if floor == ts else floor + tf.delta
