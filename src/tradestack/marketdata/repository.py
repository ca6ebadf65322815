"""Instruments and bars in the database."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, overload

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    String,
    Text,
    and_,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from tradestack.domain.instruments import Instrument, InstrumentKind
from tradestack.domain.marketdata import Bar, Timeframe
from tradestack.kit.db import sqlite_rows
from tradestack.models.marketdata import BarRow, BarVersionRow, InstrumentRow

# Rows per INSERT statement: well under SQLite's 32,766 bound parameters (10 columns per row).
_CHUNK = 2000


RawBar = tuple[int, str, str, str, str, str, str]
"""A stored bar as the API sends it: (epoch seconds of its start, ISO 8601 start, open, high, low, close, volume as text)."""

SQLiteBar = tuple[str, str, str, str, str, str]
"""A bar as SQLite stores it: (start as `sqlite_time` text, open, high, low, close, volume as plain decimal text)."""

_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"
_SQLITE_BARS = "SELECT ts, open, high, low, close, volume FROM bars WHERE symbol = ? AND resolution = ?"


_FINEST_FIRST = sorted(Timeframe, key=lambda t: t.seconds)


def _stored_sql(symbol: str) -> str:
    """`BarRepository.stored`'s query, `symbol` its placeholder (the resolutions are the enum's own values)."""
    columns = []
    for resolution in _FINEST_FIRST:
        series = f"symbol = {symbol} AND resolution = '{resolution.value}'"
        columns += [
            # The newest bar's start (one backward index probe; NULL: nothing stored at this resolution).
            f"(SELECT ts FROM bars WHERE {series} ORDER BY ts DESC LIMIT 1)",  # noqa: S608 - constants and a placeholder
            f"(SELECT version FROM bar_versions WHERE {series})",  # noqa: S608
            f"(SELECT closed_version FROM bar_versions WHERE {series})",  # noqa: S608
        ]
    return "SELECT " + ", ".join(columns)


_STORED_SQLITE = _stored_sql("?1")
_STORED_POSTGRESQL = text(_stored_sql(":symbol"))


def sqlite_time(ts: datetime) -> str:
    """`ts` as SQLite stores a bar's start (SQLAlchemy's DATETIME text of the UTC time): ``2024-03-01 14:30:00.000000``.

    Fixed width, so these texts sort (and compare) as the times do.
    """
    return ts.astimezone(UTC).strftime(_SQLITE_TIME)


def sqlite_time_parsed(text: str) -> datetime:
    """The UTC time of a `sqlite_time` text."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class StoredBars(Sequence[Bar]):
    """A whole stored series kept as the database's text (`RawBar`), each `Bar` made when it is read.

    For the replay, which reads one bar at a time: loading a series does no Decimal or datetime
    work, so tens of thousands of bars load in one cheap query. The numbers are the canonical text
    the database stores (SQLite) or renders with ``trim_scale`` (PostgreSQL), so each bar read is
    exactly the `Bar` that `BarRepository.between` returns.
    """

    __slots__ = ("_rows", "_symbol")

    def __init__(self, symbol: str, rows: Sequence[RawBar]) -> None:
        self._symbol = symbol
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Bar: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Bar]: ...

    def __getitem__(self, index: int | slice) -> Bar | Sequence[Bar]:
        if isinstance(index, slice):
            return StoredBars(self._symbol, self._rows[index])
        _, start, open_, high, low, close, volume = self._rows[index]
        return Bar(
            self._symbol,
            datetime.fromisoformat(start),
            Decimal(open_),
            Decimal(high),
            Decimal(low),
            Decimal(close),
            Decimal(volume),
        )


@dataclass(frozen=True, slots=True)
class WriteCounts:
    """What storing a batch of bars did."""

    inserted: int = 0
    unchanged: int = 0
    replaced: int = 0
    conflicting: int = 0  # already stored with other values and left as they were


@dataclass(frozen=True, slots=True)
class SeriesVersion:
    """The version of a stored series (`BarVersionRow`): equal values, equal bars (closed candles: equal `closed`);
    and the start of its newest bar as the database returned it, which also tells an append by a writer that does not
    keep `bar_versions` (the previous release during a rollout) from no change."""

    version: int
    closed: int
    newest: object = None

    @property
    def answer_version(self) -> tuple[int, object]:
        """What a whole answer built from the series is valid for."""
        return (self.version, self.newest)


@dataclass(frozen=True, slots=True)
class SeriesSummary:
    """One stored series: a symbol at one resolution."""

    symbol: str
    resolution: Timeframe
    bars: int
    first: datetime
    last: datetime


def _instrument(row: InstrumentRow) -> Instrument:
    return Instrument(
        symbol=row.symbol,
        kind=InstrumentKind(row.kind),
        venue=row.venue,
        name=row.name,
        quote_currency=row.quote_currency,
        base_currency=row.base_currency,
        tick_size=row.tick_size,
        lot_size=row.lot_size,
        tradable=row.tradable,
    )


def _bar(row: BarRow) -> Bar:
    return Bar(row.symbol, row.ts, row.open, row.high, row.low, row.close, row.volume)


def _upsert(session: AsyncSession) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_nothing`` and ``on_conflict_do_update``."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


class InstrumentRepository:
    """The `instruments` table."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def list(self) -> list[Instrument]:
        """Every instrument, by symbol."""
        rows = await self._session.scalars(select(InstrumentRow).order_by(InstrumentRow.symbol))
        return [_instrument(row) for row in rows]

    async def get(self, symbol: str) -> Instrument | None:
        """The instrument `symbol`, or None."""
        row = await self._session.get(InstrumentRow, symbol)
        return None if row is None else _instrument(row)

    async def upsert(self, instruments: Iterable[Instrument], now: datetime) -> tuple[int, int]:
        """Insert new instruments and bring changed ones up to date; returns (inserted, updated)."""
        wanted = {i.symbol: i for i in instruments}
        existing = {
            row.symbol: row
            for row in await self._session.scalars(select(InstrumentRow).where(InstrumentRow.symbol.in_(list(wanted))))
        }
        inserted = updated = 0
        for symbol, instrument in wanted.items():
            values = {
                "kind": instrument.kind.value,
                "venue": instrument.venue,
                "name": instrument.name,
                "quote_currency": instrument.quote_currency,
                "base_currency": instrument.base_currency,
                "tick_size": instrument.tick_size,
                "lot_size": instrument.lot_size,
                "tradable": instrument.tradable,
            }
            row = existing.get(symbol)
            if row is None:
                # Several workers may seed at once: a row another one inserted first is not an error.
                result = await self._session.execute(
                    _upsert(self._session)(InstrumentRow)
                    .values(symbol=symbol, created_at=now, **values)
                    .on_conflict_do_nothing(index_elements=["symbol"])
                )
                inserted += max(0, getattr(result, "rowcount", 1) or 0)
            elif any(getattr(row, key) != value for key, value in values.items()):
                await self._session.execute(update(InstrumentRow).where(InstrumentRow.symbol == symbol).values(**values))
                updated += 1
        await self._session.flush()
        return inserted, updated


class BarRepository:
    """The `bars` table: one row per (symbol, resolution, ts); and `bar_versions`, one row per series.

    The one writer of both: every method that inserts, replaces or deletes bars changes the
    series' version in the same transaction (`_changing`), so a reader in any process sees that
    a series changed with one index probe (`stored`).
    """

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def write(
        self, symbol: str, resolution: Timeframe, bars: Sequence[Bar], *, source: str, replace: bool = False
    ) -> WriteCounts:
        """Store `bars` (sorted, one symbol). Identical rows are left alone, so writing twice changes nothing.

        A row already stored with other values is kept (counted as conflicting) unless `replace`.
        """
        if not bars:
            return WriteCounts()
        await self._changing(symbol, resolution, closed=False)
        newest = await self._newest(symbol, resolution)
        stored = await self._existing(symbol, resolution, bars[0].ts, bars[-1].ts)
        new: list[dict[str, object]] = []
        unchanged = replaced = conflicting = 0
        before_newest = False  # a bar inserted before the series' newest: not an append
        for bar in bars:
            values = (bar.open, bar.high, bar.low, bar.close, bar.volume)
            old = stored.get(bar.ts)
            if old is None:
                before_newest = before_newest or (newest is not None and bar.ts < newest)
                new.append(
                    {
                        "symbol": symbol,
                        "resolution": resolution.value,
                        "ts": bar.ts,
                        "open": bar.open,
                        "high": bar.high,
                        "low": bar.low,
                        "close": bar.close,
                        "volume": bar.volume,
                        "source": source,
                    }
                )
            elif old == values:
                unchanged += 1
            elif replace:
                await self._session.execute(
                    update(BarRow)
                    .where(BarRow.symbol == symbol, BarRow.resolution == resolution.value, BarRow.ts == bar.ts)
                    .values(open=bar.open, high=bar.high, low=bar.low, close=bar.close, volume=bar.volume, source=source)
                )
                replaced += 1
            else:
                conflicting += 1
        if replaced or before_newest:
            await self._changing(symbol, resolution, closed=True)
        for start in range(0, len(new), _CHUNK):
            await self._session.execute(insert(BarRow), new[start : start + _CHUNK])
        return WriteCounts(inserted=len(new), unchanged=unchanged, replaced=replaced, conflicting=conflicting)

    async def _changing(self, symbol: str, resolution: Timeframe, *, closed: bool) -> None:
        """Give the series a new version (and with `closed` a new closed version) in this transaction.

        Called before the bars change: on PostgreSQL the row's lock then queues the series'
        writers, so the newest bar a writer reads to tell an append (`write`) is still the newest
        when it inserts. A new series' row is created.
        """
        token = secrets.randbits(63)
        changed = {"version": token, "closed_version": token} if closed else {"version": token}
        await self._session.execute(
            _upsert(self._session)(BarVersionRow)
            .values(symbol=symbol, resolution=resolution.value, version=token, closed_version=token)
            .on_conflict_do_update(index_elements=["symbol", "resolution"], set_=changed)
        )

    async def _newest(self, symbol: str, resolution: Timeframe) -> datetime | None:
        """The start of the series' newest bar (one backward index probe), None when it has none."""
        return await self._session.scalar(
            select(BarRow.ts)
            .where(BarRow.symbol == symbol, BarRow.resolution == resolution.value)
            .order_by(BarRow.ts.desc())
            .limit(1)
        )

    def _range(self, symbol: str, resolution: Timeframe, start: datetime, end: datetime) -> ColumnElement[bool]:
        return and_(BarRow.symbol == symbol, BarRow.resolution == resolution.value, BarRow.ts >= start, BarRow.ts < end)

    async def count(self, symbol: str, resolution: Timeframe, start: datetime, end: datetime) -> int:
        """How many bars have start <= ts < end."""
        return int(
            await self._session.scalar(
                select(func.count()).select_from(BarRow).where(self._range(symbol, resolution, start, end))
            )
            or 0
        )

    async def delete(self, symbol: str, resolution: Timeframe, start: datetime, end: datetime) -> int:
        """Delete the bars with start <= ts < end (changing the series' versions when there are any); returns how many."""
        where = self._range(symbol, resolution, start, end)
        if not await self._session.scalar(select(exists().where(where))):
            return 0
        await self._changing(symbol, resolution, closed=True)
        result = await self._session.execute(delete(BarRow).where(where))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def _existing(
        self, symbol: str, resolution: Timeframe, first: datetime, last: datetime
    ) -> dict[datetime, tuple[object, ...]]:
        rows = await self._session.execute(
            select(BarRow.ts, BarRow.open, BarRow.high, BarRow.low, BarRow.close, BarRow.volume).where(
                BarRow.symbol == symbol, BarRow.resolution == resolution.value, BarRow.ts >= first, BarRow.ts <= last
            )
        )
        return {row[0]: tuple(row[1:]) for row in rows}

    async def last(self, symbol: str, resolution: Timeframe, count: int, *, before: datetime | None = None) -> list[Bar]:
        """The last `count` bars (before `before`, exclusive, when given), oldest first."""
        query = select(BarRow).where(BarRow.symbol == symbol, BarRow.resolution == resolution.value)
        if before is not None:
            query = query.where(BarRow.ts < before)
        rows = await self._session.scalars(query.order_by(BarRow.ts.desc()).limit(count))
        return [_bar(row) for row in reversed(list(rows))]

    async def between(
        self, symbol: str, resolution: Timeframe, start: datetime | None, end: datetime | None, limit: int | None
    ) -> list[Bar]:
        """Bars with start <= ts < end (either bound optional), oldest first, at most `limit`."""
        # Rows as tuples, not ORM objects: a whole series (the replay loads tens of thousands) comes 4x faster.
        columns = (BarRow.symbol, BarRow.ts, BarRow.open, BarRow.high, BarRow.low, BarRow.close, BarRow.volume)
        query = select(*columns).where(BarRow.symbol == symbol, BarRow.resolution == resolution.value)
        if start is not None:
            query = query.where(BarRow.ts >= start)
        if end is not None:
            query = query.where(BarRow.ts < end)
        query = query.order_by(BarRow.ts)
        if limit is not None:
            query = query.limit(limit)
        return [Bar(*row) for row in await self._session.execute(query)]

    async def sqlite_between(
        self, symbol: str, resolution: Timeframe, start: datetime | None, end: datetime | None, limit: int | None
    ) -> list[SQLiteBar]:
        """`between` on SQLite as stored (`SQLiteBar`), read by the sqlite3 module in one trip, oldest first.

        No SQLAlchemy result, Decimal, datetime or SQL function per row: the range is an index search
        on the primary key (symbol, resolution, ts) and the rows are the stored text.
        """
        sql, parameters = _SQLITE_BARS, list[str | int]([symbol, resolution.value])
        if start is not None:
            sql += " AND ts >= ?"
            parameters.append(sqlite_time(start))
        if end is not None:
            sql += " AND ts < ?"
            parameters.append(sqlite_time(end))
        sql += " ORDER BY ts"
        if limit is not None:
            sql += " LIMIT ?"
            parameters.append(limit)
        return await sqlite_rows(self._session, sql, parameters)

    async def sqlite_last(
        self, symbol: str, resolution: Timeframe, count: int, *, before: datetime | None = None
    ) -> list[SQLiteBar]:
        """`last` on SQLite as stored (`SQLiteBar`, see `sqlite_between`), oldest first."""
        sql, parameters = _SQLITE_BARS, list[str | int]([symbol, resolution.value])
        if before is not None:
            sql += " AND ts < ?"
            parameters.append(sqlite_time(before))
        rows = await sqlite_rows(self._session, sql + " ORDER BY ts DESC LIMIT ?", [*parameters, count])
        rows.reverse()
        return rows

    def _raw_columns(self) -> tuple[ColumnElement[Any], ...]:
        """(epoch seconds, ISO 8601 start with Z, open, high, low, close, volume as plain decimal text), computed by the database.

        The text is what the API sends (`plain` numbers, ``...T00:00:00Z`` times), so a row goes
        to JSON without a Decimal or a datetime being made in Python.
        """
        if self._session.get_bind().dialect.name == "postgresql":
            utc = func.timezone("UTC", BarRow.ts)
            iso = case(
                (func.date_trunc("second", BarRow.ts) == BarRow.ts, func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
                else_=func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            )
            epoch = cast(func.floor(func.extract("epoch", BarRow.ts)), BigInteger)
            prices: tuple[ColumnElement[Any], ...] = tuple(
                cast(func.trim_scale(column), Text)
                for column in (BarRow.open, BarRow.high, BarRow.low, BarRow.close, BarRow.volume)
            )
            return (epoch, iso, *prices)
        # SQLite: timestamps are stored as 'YYYY-MM-DD HH:MM:SS.ffffff', numbers as plain text already.
        raw_ts = type_coerce(BarRow.ts, String())
        iso = case(
            (func.substr(raw_ts, 21) == "000000", func.printf("%sT%sZ", func.substr(raw_ts, 1, 10), func.substr(raw_ts, 12, 8))),
            else_=func.printf("%sT%sZ", func.substr(raw_ts, 1, 10), func.substr(raw_ts, 12)),
        )
        epoch = cast(func.strftime("%s", raw_ts), Integer)
        prices = tuple(
            type_coerce(column, String()) for column in (BarRow.open, BarRow.high, BarRow.low, BarRow.close, BarRow.volume)
        )
        return (epoch, iso, *prices)

    async def raw_between(
        self, symbol: str, resolution: Timeframe, start: datetime | None, end: datetime | None, limit: int | None
    ) -> list[RawBar]:
        """`between` as `RawBar` tuples (one Core query, no ORM objects), oldest first."""
        query = select(*self._raw_columns()).where(BarRow.symbol == symbol, BarRow.resolution == resolution.value)
        if start is not None:
            query = query.where(BarRow.ts >= start)
        if end is not None:
            query = query.where(BarRow.ts < end)
        query = query.order_by(BarRow.ts)
        if limit is not None:
            query = query.limit(limit)
        return [tuple(row) for row in await self._session.execute(query)]

    async def stored_series(self, symbol: str, resolution: Timeframe) -> StoredBars:
        """All of a series, oldest first, as `StoredBars` (read lazily: see there)."""
        return StoredBars(symbol, await self.raw_between(symbol, resolution, None, None, None))

    async def raw_last(self, symbol: str, resolution: Timeframe, count: int, *, before: datetime | None = None) -> list[RawBar]:
        """`last` as `RawBar` tuples, oldest first."""
        query = select(*self._raw_columns()).where(BarRow.symbol == symbol, BarRow.resolution == resolution.value)
        if before is not None:
            query = query.where(BarRow.ts < before)
        rows = list(await self._session.execute(query.order_by(BarRow.ts.desc()).limit(count)))
        rows.reverse()
        return [tuple(row) for row in rows]

    async def resolutions(self, symbol: str) -> list[Timeframe]:
        """Resolutions stored for `symbol`, finest first."""
        return list(await self.stored(symbol))

    async def stored(self, symbol: str) -> dict[Timeframe, SeriesVersion | None]:
        """Resolutions stored for `symbol`, finest first, each with its series' version (None when it has no row yet).

        One query (`_STORED`, written once): per resolution a backward index probe into `bars` (its
        newest bar) and a primary-key read of `bar_versions`. Read on every candles request, so no statement is built.
        """
        if self.aggregates_in_sql:
            row = tuple((await self._session.execute(_STORED_POSTGRESQL, {"symbol": symbol})).one())
        else:
            [row] = await sqlite_rows(self._session, _STORED_SQLITE, [symbol])
        return {
            resolution: None
            if row[3 * index + 1] is None
            else SeriesVersion(row[3 * index + 1], row[3 * index + 2], row[3 * index])
            for index, resolution in enumerate(_FINEST_FIRST)
            if row[3 * index] is not None
        }

    @property
    def aggregates_in_sql(self) -> bool:
        """True where `raw_buckets` can roll bars up exactly in the database (PostgreSQL's NUMERIC; not SQLite's text)."""
        return self._session.get_bind().dialect.name == "postgresql"

    async def raw_buckets(
        self,
        symbol: str,
        resolution: Timeframe,
        seconds: int,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        *,
        latest: bool,
    ) -> list[RawBar]:
        """Bars rolled up into buckets of ``seconds`` by PostgreSQL, as `RawBar` tuples, oldest first.

        open = first open, high = max, low = min, close = last close, volume = sum (exact
        NUMERIC). The first ``limit`` buckets starting in [start, end), or with ``latest`` the
        last ``limit`` before ``end``; buckets are whole (grouped before the limit applies).
        """
        epoch = func.extract("epoch", BarRow.ts)
        bucket = (func.floor(epoch / seconds) * seconds).label("bucket")
        grouped = select(
            bucket,
            func.array_agg(aggregate_order_by(BarRow.open, BarRow.ts.asc()))[1].label("open"),
            func.max(BarRow.high).label("high"),
            func.min(BarRow.low).label("low"),
            func.array_agg(aggregate_order_by(BarRow.close, BarRow.ts.desc()))[1].label("close"),
            func.sum(BarRow.volume).label("volume"),
        ).where(BarRow.symbol == symbol, BarRow.resolution == resolution.value)
        if start is not None:
            grouped = grouped.where(BarRow.ts >= start)
        if end is not None:
            grouped = grouped.where(BarRow.ts < end)
        grouped = grouped.group_by(bucket).order_by(bucket.desc() if latest else bucket.asc()).limit(limit)
        inner = grouped.subquery()
        utc = func.timezone("UTC", func.to_timestamp(inner.c.bucket))
        query = select(
            cast(inner.c.bucket, BigInteger),
            func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
            *(cast(func.trim_scale(inner.c[name]), Text) for name in ("open", "high", "low", "close", "volume")),
        ).order_by(inner.c.bucket)
        return [tuple(row) for row in await self._session.execute(query)]

    async def summary(self) -> list[SeriesSummary]:
        """Every stored series with its size and time span."""
        rows = await self._session.execute(
            select(BarRow.symbol, BarRow.resolution, func.count(), func.min(BarRow.ts), func.max(BarRow.ts))
            .group_by(BarRow.symbol, BarRow.resolution)
            .order_by(BarRow.symbol, BarRow.resolution)
        )
        return [
            SeriesSummary(symbol, Timeframe(resolution), count, _aware(first), _aware(last))
            for symbol, resolution, count, first, last in rows
        ]


def _aware(value: object) -> datetime:
    """min()/max() bypass the column type on SQLite: parse and mark as UTC."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)
