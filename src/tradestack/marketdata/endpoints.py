"""REST endpoints of market data: instruments, stored series, quotes, candles and order books."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from tradestack.identity.deps import authorize, require
from tradestack.identity.permissions import Permission
from tradestack.identity.service import Principal
from tradestack.kit.runtime import Runtime
from tradestack.kit.web import OrjsonResponse, RuntimeDep, cache_prefetch, hot_path
from tradestack.marketdata.calendars import known_until
from tradestack.marketdata.schemas import (
    CandleList,
    InstrumentList,
    InstrumentOut,
    OrderBookOut,
    QuoteList,
    SeriesList,
    SeriesOut,
)
from tradestack.marketdata.service import (
    MAX_SYMBOLS_PER_REQUEST,
    QUOTE_KEY,
    MarketDataService,
    split_symbols,
    venue_of,
)

router = APIRouter(prefix="/api/market", tags=["market data"])
Reader = Annotated[Principal, require(Permission.MARKET_DATA_READ)]


@router.get("/instruments", response_model=InstrumentList, summary="Instruments with tick and lot sizes and sessions")
async def instruments(runtime: RuntimeDep, _: Reader) -> InstrumentList:
    service = MarketDataService(runtime)
    now = runtime.clock.now()
    listed = []
    for instrument in (await service.instruments()).values():
        venue = venue_of(instrument, always_open=runtime.settings.market_hours_always_open)
        open_now = venue.is_open(now)
        next_open = None if open_now else venue.next_open(now)
        next_close = venue.next_close(now) if open_now and not venue.always_open else None
        calendar_until = None if venue.always_open else known_until(instrument.venue)
        fees = runtime.settings.paper_fees.get(instrument.venue)
        listed.append(
            InstrumentOut.of(
                instrument,
                timezone=venue.timezone,
                open_now=open_now,
                next_open=next_open,
                next_close=next_close,
                calendar_until=calendar_until,
                fees=fees,
            )
        )
    return InstrumentList(instruments=listed)


@router.get("/series", response_model=SeriesList, summary="Stored price history: one entry per symbol and resolution")
async def series(runtime: RuntimeDep, _: Reader) -> SeriesList:
    found = await MarketDataService(runtime).series()
    return SeriesList(
        series=[SeriesOut(symbol=s.symbol, resolution=s.resolution.value, bars=s.bars, first=s.first, last=s.last) for s in found]
    )


SYMBOLS_MAX_LENGTH = 4000


async def _quotes_answer(runtime: Runtime, symbols: str, scope: Scope | None = None) -> Response:
    service = MarketDataService(runtime)
    body = await service.quotes_json(await service.parse_symbols(symbols), scope)
    return Response(body, media_type="application/json")


def _quote_keys(scope: Scope) -> list[str] | None:
    """The quote keys a hot-path request reads (read by the rate-limit middleware with the limits)."""
    params = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    if len(params) != 1 or params[0][0] != "symbols" or len(params[0][1]) > SYMBOLS_MAX_LENGTH:
        return None
    symbols = split_symbols(params[0][1])
    return [QUOTE_KEY + s for s in symbols] if 0 < len(symbols) <= MAX_SYMBOLS_PER_REQUEST else None


async def _quotes_hot(request: Request) -> Response | None:
    # The route's checks in its order (caller, then the query): anything but one `symbols` within bounds goes to the route.
    params = request.query_params.multi_items()
    if len(params) != 1 or params[0][0] != "symbols" or len(params[0][1]) > SYMBOLS_MAX_LENGTH:
        return None
    await authorize(request, Permission.MARKET_DATA_READ)
    return await _quotes_answer(request.app.state.runtime, params[0][1], request.scope)


@router.get(
    "/quotes",
    response_model=QuoteList,
    summary="Latest quote of each symbol, from the cache",
    responses={422: {"description": "No symbols, too many, or unknown symbols (listed)"}},
)
@hot_path(_quotes_hot)
@cache_prefetch(_quote_keys)
async def quotes(
    runtime: RuntimeDep,
    _: Reader,
    symbols: Annotated[
        str, Query(description="Comma-separated symbols, e.g. AAPL,MSFT (at most 100).", max_length=SYMBOLS_MAX_LENGTH)
    ],
) -> Response:
    return await _quotes_answer(runtime, symbols)


@router.get(
    "/candles",
    response_model=CandleList,
    summary="OHLCV candles aggregated from stored bars",
    responses={422: {"description": "Unknown symbol, bad timeframe, inverted range, or no history"}},
)
async def candles(
    runtime: RuntimeDep,
    _: Reader,
    symbol: Annotated[str, Query(min_length=1, max_length=32)],
    timeframe: Annotated[str, Query(description="1m, 5m, 15m, 1h or 1d.", max_length=8)] = "1d",
    start: Annotated[datetime | None, Query(description="First candle start (inclusive), ISO 8601; naive is UTC.")] = None,
    end: Annotated[datetime | None, Query(description="Candles starting before this (exclusive).")] = None,
    limit: Annotated[int, Query(description="At most this many candles (1-10000).")] = 500,
) -> Response:
    # Built as JSON text by the service (no model per bar), closed candles and repeated answers from the process's
    # cache while the series is unchanged (`tradestack.marketdata.recent`); the response schema stays CandleList.
    body = await MarketDataService(runtime).candles_json(symbol, timeframe, start=start, end=end, limit=limit)
    return Response(body, media_type="application/json")


@router.get(
    "/orderbook",
    response_model=OrderBookOut,
    summary="Latest L2 order book of a symbol",
    responses={422: {"description": "Unknown symbol, bad depth, or no book published"}},
)
async def orderbook(
    runtime: RuntimeDep,
    _: Reader,
    symbol: Annotated[str, Query(min_length=1, max_length=32)],
    depth: Annotated[int, Query(description="Levels per side (1-50).")] = 10,
) -> Response:
    return OrjsonResponse(await MarketDataService(runtime).orderbook(symbol, depth))
