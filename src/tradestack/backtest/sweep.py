"""The vectorised sweep: a bar strategy over a whole parameter grid at once, checked against the event-driven engine.

One symbol, one account per combination. Every combination runs the same decision rule as its
`strategy.examples` class, in one compiled pass over the bars (Numba: per bar the pending order's
fill at the open, the equity, the running statistics, then the decision at the close) with no
(bars x combinations) array in memory, so a 1,000,000-bar series and a 100-combination grid need
a few arrays of the series' length. The indicators are the engine's own, bit for bit: the SMA from
the exact integer window sums divided once (`backtest.indicators.sma`), the Bollinger deviation from
`indicators.rolling_std`, so every decision is the engine's decision.

Fills follow the engine's rule: a market order sent at a close fills at the next bar's open, the
price moved by the slippage model and rounded to the tick against the taker (exact integer
arithmetic on the scaled prices), the fee `FeeModel.fee` of the notional. A buy is denied, as
`domain.risk.check_buying_power` denies it, when its notional at the close plus the price collar and
its fee exceed the cash. The statistics are empyrical's formulas (Sharpe, Sortino, annual return
and volatility with ddof 1, max drawdown from the starting capital, Calmar) on the same equity
curve the engine derives (cash plus position at each close); the tests hold them to empyrical on
the engine's own run.

Where the two differ, and why:

* An order larger than `participation_rate` x the bar's volume: the engine fills it in pieces over
  the bar's prints (open, low/high, close) and later bars; the sweep fills it whole at the open and
  flags the combination `inexact` (its trades are then not compared).
* Latency: the engine delays a fill past later prints; the sweep refuses a config with latency.
* Money: fill prices and fees are exact integers in the pass (`FeeModel.fee` rounded half-even in
  integer arithmetic), cash and equity floats summed as the engine sums them, so the statistics
  equal the engine's to rounding noise. The trades of the best combinations are rebuilt as Decimals
  from the sweep's fill bars, and `agree` checks them and the final equity to the cent against the
  engine.
* Strategies without a vectorised form (the top-k rebalancer: one account over many symbols, sized
  from its equity; any user strategy) are not swept: `SWEEPABLE` lists those that are.

Large grids can be spread over a Dask cluster (`run_sweep(..., client=...)`): the series' arrays
are scattered once and chunks of combinations run on the workers (which need tradestack installed).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from tradestack.backtest.data import BarSeries, FloatArray, IntArray, utc_of
from tradestack.backtest.engine import BacktestConfig, TradeRecord, permissive_limits, run_backtest
from tradestack.backtest.indicators import rolling_std
from tradestack.backtest.metrics import periods_per_year
from tradestack.domain.instruments import Instrument
from tradestack.domain.marketdata import Side
from tradestack.strategy.api import StrategyError
from tradestack.strategy.examples import build

_SMA, _BOLLINGER = 0, 1
SWEEPABLE: Mapping[str, tuple[str, ...]] = {
    "sma_cross": ("fast", "slow", "quantity"),
    "bollinger": ("period", "width", "quantity"),
}
"""Strategies with a vectorised form, and their parameters."""

METRICS = (
    "final_equity", "total_return", "annual_return", "annual_volatility", "sharpe", "sortino", "max_drawdown",
    "max_drawdown_duration", "calmar", "trades", "round_trips", "hit_rate", "turnover", "exposure", "fees_paid",
    "inexact",
)  # fmt: skip
"""The statistics of each combination, in the order of `SweepResult.metrics`' columns."""
_COLUMN = {name: i for i, name in enumerate(METRICS)}
MAX_COMBINATIONS = 100_000


# -- the grid --------------------------------------------------------------------------------------


def parse_grid(strategy: str, texts: Sequence[str]) -> dict[str, list[str]]:
    """``k=v1,v2,...`` or ``k=start:stop:step`` (stop included) texts as the values of each parameter.

    `StrategyError` naming what to fix: an unknown strategy or parameter, a malformed value list.
    """
    if strategy not in SWEEPABLE:
        raise StrategyError(
            f"{strategy!r} has no vectorised form; the sweep runs {', '.join(SWEEPABLE)} "
            "(run other strategies one at a time with `backtest run`)"
        )
    grid: dict[str, list[str]] = {}
    for text in texts:
        key, sep, values = text.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise StrategyError(f"--grid {text!r}: write it as name=v1,v2,... or name=start:stop:step, e.g. fast=5,10,20")
        if key not in SWEEPABLE[strategy]:
            raise StrategyError(f"{strategy} has no parameter {key!r}; its parameters are {', '.join(SWEEPABLE[strategy])}")
        grid[key] = _values(key, values.strip())
    if not grid:
        raise StrategyError("give at least one --grid name=v1,v2,...")
    count = math.prod(len(v) for v in grid.values())
    if count > MAX_COMBINATIONS:
        raise StrategyError(f"the grid has {count} combinations, at most {MAX_COMBINATIONS} are swept at once")
    return grid


def _values(key: str, text: str) -> list[str]:
    if ":" not in text:
        values = [v.strip() for v in text.split(",") if v.strip()]
        if not values:
            raise StrategyError(f"--grid {key}: no values")
        return values
    parts = text.split(":")
    try:
        start, stop, step = (Decimal(p) for p in parts) if len(parts) == 3 else (Decimal("nan"),) * 3
    except InvalidOperation:
        raise StrategyError(f"--grid {key}={text}: start:stop:step must be numbers") from None
    if not (start.is_finite() and stop.is_finite() and step.is_finite()) or step <= 0 or stop < start:
        raise StrategyError(f"--grid {key}={text}: write start:stop:step with step > 0 and stop >= start")
    count = int((stop - start) / step) + 1
    if count > MAX_COMBINATIONS:
        raise StrategyError(f"--grid {key}={text} has {count} values")
    return [str(start + i * step) for i in range(count)]


def combinations(grid: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
    """Every combination of the grid's values (the last parameter varies fastest)."""
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


# -- the market, prepared once ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class SweepMarket:
    """One symbol's series with the arrays every combination reads: exact fill prices, window sums."""

    series: BarSeries
    instrument: Instrument
    config: BacktestConfig
    sums: IntArray
    """Cumulative sums of the scaled closes, with a leading 0 (the SMA's exact window sums)."""
    closes: FloatArray
    buy_units: IntArray
    """Price a market buy fills at on each bar's open, in units of 10^-`fill_places` (slippage, tick)."""
    sell_units: IntArray
    fill_places: int
    volumes: FloatArray
    periods_per_year: int

    @property
    def buy_prices(self) -> FloatArray:
        return self.buy_units / float(10**self.fill_places)

    @property
    def sell_prices(self) -> FloatArray:
        return self.sell_units / float(10**self.fill_places)


def _places_of(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def prepare(series: BarSeries, instrument: Instrument, config: BacktestConfig) -> SweepMarket:
    """The arrays of `series` a sweep reads, fill prices exact (integer arithmetic on the scaled opens)."""
    if len(series) == 0:
        raise StrategyError(f"no bars of {series.symbol} to sweep")
    if config.latency.seconds:
        raise StrategyError("the sweep fills at the next open and does not model latency; use `backtest run` for it")
    if instrument.quote_currency != config.currency:
        raise StrategyError(f"{series.symbol} is quoted in {instrument.quote_currency}, the account in {config.currency}")
    places = max(series.places, _places_of(instrument.tick_size))
    opens = [int(v) * 10 ** (places - series.places) for v in series.open.tolist()]
    tick = int(instrument.tick_size.scaleb(places))
    bps = config.slippage.bps
    bps_places = _places_of(bps)
    denominator = 10_000 * 10**bps_places
    up, down = denominator + int(bps.scaleb(bps_places)), denominator - int(bps.scaleb(bps_places))
    # Python integers: exact whatever the magnitudes (ceil/floor to the tick, against the taker)
    buy = [-((-o * up) // (denominator * tick)) * tick for o in opens]
    sell = [((o * down) // (denominator * tick)) * tick for o in opens]
    if max(buy) >= 2**63:
        raise StrategyError(f"{series.symbol}: prices too large for the sweep's 64-bit fill prices")
    return SweepMarket(
        series=series,
        instrument=instrument,
        config=config,
        sums=np.r_[np.int64(0), np.cumsum(series.close, dtype=np.int64)],
        closes=series.floats(series.close),
        buy_units=np.asarray(buy, dtype=np.int64),
        sell_units=np.asarray(sell, dtype=np.int64),
        fill_places=places,
        volumes=series.volume_floats(),
        periods_per_year=periods_per_year(series.ts),
    )


# -- the compiled pass -----------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _simulate(
    kind: int,
    first: int,
    second: int,
    width: float,
    sums: IntArray,
    scale: int,
    deviation: FloatArray,
    closes: FloatArray,
    buy_units: IntArray,
    sell_units: IntArray,
    price_scale: int,
    volumes: FloatArray,
    quantity_units: int,
    quantity_scale: int,
    capital: float,
    fee_bps: float,
    fee_minimum: float,
    fee_numerator: int,
    fee_divisor: int,
    fee_minimum_units: int,
    fee_scale: int,
    collar: float,
    participation: float,
    periods: int,
    fills: IntArray,
    curve: FloatArray,
) -> FloatArray:
    """Run one combination; its `METRICS`. `fills` (length >= the number of fills, or 0) gets each fill's bar, signed."""
    n = len(closes)
    quantity = float(quantity_units) / float(quantity_scale)
    money_scale = quantity_scale * price_scale
    entry_units = 0
    held = False
    pending = 0
    cash = 0.0
    entry = 0.0
    previous_equity = capital
    peak = capital
    max_drawdown = 0.0
    under = 0
    longest_under = 0
    count = 0
    mean = 0.0
    m2 = 0.0
    downside = 0.0
    equity_sum = 0.0
    exposed = 0
    fill_count = 0
    round_trips = 0
    wins = 0
    traded = 0.0
    fees = 0.0
    inexact = 0.0
    above_before = False
    recording = len(fills) > 0
    equity = capital
    for i in range(n):
        if pending != 0:
            if volumes[i] * participation < quantity:
                inexact = 1.0
            if volumes[i] > 0:
                units = buy_units[i] if pending > 0 else sell_units[i]
                price = float(units) / float(price_scale)
                notional_units = quantity_units * units  # exact, in 10^-(quantity and price places)
                notional = float(notional_units) / float(money_scale)
                fee_units = 0
                if fee_divisor > 0:  # FeeModel.fee in integers: bps of the notional, half-even, at least the minimum
                    raw = notional_units * fee_numerator
                    fee_units = raw // fee_divisor
                    rest = raw - fee_units * fee_divisor
                    if 2 * rest > fee_divisor or (2 * rest == fee_divisor and fee_units % 2 == 1):
                        fee_units += 1
                    fee_units = max(fee_units, fee_minimum_units) if notional_units > 0 else 0
                    fee = float(fee_units) / float(fee_scale)
                else:
                    fee = max(notional * fee_bps / 10_000.0, fee_minimum) if notional > 0 else 0.0
                if pending > 0:
                    cash -= notional + fee
                    held = True
                    entry = price
                    entry_units = units
                else:
                    cash += notional - fee
                    held = False
                    round_trips += 1
                    if fee_divisor > 0:
                        if (units - entry_units) * quantity_units * fee_scale > fee_units * money_scale:
                            wins += 1
                    elif (price - entry) * quantity - fee > 0:
                        wins += 1
                if recording:
                    fills[fill_count] = i if pending > 0 else -i - 1
                fill_count += 1
                traded += notional
                fees += fee
                pending = 0
        value = quantity * closes[i] if held else 0.0
        equity = (capital + value) + cash
        period_return = equity / previous_equity - 1.0
        previous_equity = equity
        if len(curve) > 0:
            curve[i] = equity
        count += 1
        delta = period_return - mean
        mean += delta / count
        m2 += delta * (period_return - mean)
        if period_return < 0:
            downside += period_return * period_return
        equity_sum += equity
        if held:
            exposed += 1
        if equity > peak:
            peak = equity
        drawdown = equity / peak - 1.0
        max_drawdown = min(max_drawdown, drawdown)
        under = under + 1 if equity < peak else 0
        longest_under = max(longest_under, under)
        # the decision at bar i's close, as the strategy's on_bar takes it (nothing while an order works)
        if kind == 0:
            if i < second - 1:
                continue
            fast = float(sums[i + 1] - sums[i + 1 - first]) / float(first * scale)
            slow = float(sums[i + 1] - sums[i + 1 - second]) / float(second * scale)
            above = fast > slow
            crossed = above != above_before
            above_before = above
            if i < second or not crossed or pending != 0:  # the strategy starts comparing at index `slow`
                continue
            buy = above and not held
            sell = (not above) and held
        else:
            if i < first - 1 or pending != 0:
                continue
            middle = float(sums[i + 1] - sums[i + 1 - first]) / float(first * scale)
            lower = middle - width * deviation[i]
            buy = (not held) and closes[i] < lower
            sell = held and closes[i] >= middle
        if buy:
            reference = quantity * (closes[i] * (1.0 + collar / 100.0))
            reserve_fee = max(reference * fee_bps / 10_000.0, fee_minimum)
            if reference + reserve_fee <= capital + cash:
                pending = 1
        elif sell:
            pending = -1
    years = count / periods
    total_return = equity / capital - 1.0
    std = math.sqrt(m2 / (count - 1)) if count > 1 else math.nan
    annual_return = (equity / capital) ** (1.0 / years) - 1.0 if years > 0 and equity > 0 else math.nan
    annual_volatility = std * math.sqrt(periods)
    sharpe = mean / std * math.sqrt(periods) if std > 0 else math.nan
    downside_risk = math.sqrt(downside / count) * math.sqrt(periods) if count else math.nan
    sortino = mean * periods / downside_risk if downside_risk > 0 else math.nan
    calmar = annual_return / -max_drawdown if max_drawdown < 0 else math.nan
    hit_rate = wins / round_trips if round_trips else math.nan
    average_equity = equity_sum / count if count else capital
    turnover = traded / average_equity if average_equity else math.nan
    exposure = exposed / count if count else 0.0
    return np.array(  # in the order of METRICS
        [
            equity, total_return, annual_return, annual_volatility, sharpe, sortino, max_drawdown, float(longest_under),
            calmar, float(fill_count), float(round_trips), hit_rate, turnover, exposure, fees, inexact,
        ]
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Combination:
    """One combination's numbers as the compiled pass takes them."""

    kind: int
    first: int
    second: int
    width: float
    quantity: Decimal


def _combination(strategy: str, symbol: str, params: Mapping[str, str]) -> _Combination:
    built = build(strategy, [symbol], params)  # the strategy's own checks and defaults
    if strategy == "sma_cross":
        return _Combination(_SMA, built.fast_period, built.slow_period, 0.0, built.quantity)  # type: ignore[attr-defined]
    return _Combination(_BOLLINGER, built.period, 0, float(built.width), built.quantity)  # type: ignore[attr-defined]


def _run_one(
    market: SweepMarket, combination: _Combination, deviation: FloatArray, fills: IntArray, curve: FloatArray
) -> FloatArray:
    config = market.config
    limits = config.limits or permissive_limits(config.currency)
    quantity_places = _places_of(combination.quantity)
    quantity_units = int(combination.quantity.scaleb(quantity_places))
    fee = config.fee
    numerator, divisor, minimum_units, fee_scale = 0, 0, 0, 1
    if fee.places is not None:
        bps_places = _places_of(fee.bps)
        numerator = int(fee.bps.scaleb(bps_places))
        shift = quantity_places + market.fill_places + bps_places + 4 - fee.places
        divisor = 10**shift if shift >= 0 else 1
        numerator *= 10**-shift if shift < 0 else 1
        fee_scale = 10**fee.places
        minimum_units = int(fee.minimum.quantize(Decimal(1).scaleb(-fee.places), rounding=ROUND_HALF_EVEN).scaleb(fee.places))
        largest = max(int(market.buy_units.max()), 1) * quantity_units * max(numerator, 1)
        if largest >= 2**62 or divisor >= 2**62 or quantity_units * (10**quantity_places) * fee_scale >= 2**62:
            numerator, divisor = 0, 0  # too large for exact 64-bit fees: float fees (statistics only)
    result: FloatArray = _simulate(
        combination.kind,
        combination.first,
        combination.second,
        combination.width,
        market.sums,
        10**market.series.places,
        deviation,
        market.closes,
        market.buy_units,
        market.sell_units,
        10**market.fill_places,
        market.volumes,
        quantity_units,
        10**quantity_places,
        float(config.capital),
        float(fee.bps),
        float(fee.minimum),
        numerator,
        divisor,
        minimum_units,
        fee_scale,
        float(limits.price_collar_pct),
        float(config.participation_rate),
        market.periods_per_year,
        fills,
        curve,
    )
    return result


_NO_FILLS = np.zeros(0, dtype=np.int64)
_NO_CURVE = np.zeros(0)


def sweep_chunk(market: SweepMarket, strategy: str, combos: Sequence[Mapping[str, str]]) -> FloatArray:
    """The `METRICS` of `combos` (rows) on `market`; what each Dask task runs."""
    symbol = market.series.symbol
    parsed = [_combination(strategy, symbol, c) for c in combos]
    deviations: dict[int, FloatArray] = {}
    empty = np.zeros(0)
    out = np.empty((len(parsed), len(METRICS)))
    for row, combination in enumerate(parsed):
        deviation = empty
        if combination.kind == _BOLLINGER:
            deviation = deviations.get(combination.first, empty)
            if combination.first not in deviations:
                deviation = deviations[combination.first] = rolling_std(market.closes, combination.first)
        out[row] = _run_one(market, combination, deviation, _NO_FILLS, _NO_CURVE)
    return out


@dataclass(frozen=True, slots=True, eq=False)
class SweepResult:
    """Every combination's statistics: `metrics[i, METRICS.index(name)]` of `combos[i]`."""

    strategy: str
    symbol: str
    grid: dict[str, list[str]]
    combos: list[dict[str, str]]
    metrics: FloatArray
    bars: int
    skipped: int = 0
    """Combinations of the grid the strategy refuses (left out), e.g. fast >= slow."""
    skip_reasons: list[str] = field(default_factory=list)

    def column(self, name: str) -> FloatArray:
        """One statistic of every combination."""
        values: FloatArray = self.metrics[:, _COLUMN[name]]
        return values

    def best(self, count: int, by: str = "sharpe") -> list[int]:
        """Indexes of the `count` best combinations by `by` (highest first; NaN last; max_drawdown: least deep)."""
        if by not in _COLUMN:
            raise StrategyError(f"no statistic {by!r}; use one of {', '.join(METRICS)}")
        values = self.column(by)
        key = np.where(np.isnan(values), -np.inf, values)
        return [int(i) for i in np.argsort(-key, kind="stable")[:count]]


def run_sweep(
    strategy: str,
    series: BarSeries,
    grid: Mapping[str, Sequence[str]],
    config: BacktestConfig,
    instrument: Instrument,
    *,
    client: Any = None,
    chunk_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Every combination of `grid` for `strategy` on `series`; on `client` (a dask.distributed Client) when given."""
    market = prepare(series, instrument, config)
    combos: list[dict[str, str]] = []
    refused: list[str] = []
    for combo in combinations(grid):  # the strategy's own checks, before any work (e.g. sma_cross: fast < slow)
        try:
            _combination(strategy, series.symbol, combo)
        except StrategyError as error:
            refused.append(str(error))
            continue
        combos.append(combo)
    if not combos:
        raise StrategyError(f"no combination of the grid is valid: {refused[0]}")
    chunks = [combos[i : i + chunk_size] for i in range(0, len(combos), chunk_size)]
    if client is None:
        parts = []
        for number, chunk in enumerate(chunks):
            parts.append(sweep_chunk(market, strategy, chunk))
            if progress is not None:
                progress(min((number + 1) * chunk_size, len(combos)), len(combos))
    else:
        shared = client.scatter(market, broadcast=True)
        futures = client.map(sweep_chunk, [shared] * len(chunks), [strategy] * len(chunks), chunks, pure=False)
        parts = client.gather(futures)
    metrics = np.vstack(parts) if parts else np.empty((0, len(METRICS)))
    grid_copy = {k: list(v) for k, v in grid.items()}
    return SweepResult(strategy, series.symbol, grid_copy, combos, metrics, len(series), len(refused), refused[:1])


# -- exact trades and the agreement with the event-driven engine ----------------------------------


@dataclass(frozen=True, slots=True)
class SweepTrade:
    """One fill of the sweep, rebuilt exactly."""

    ts_us: int
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal


def exact_trades(market: SweepMarket, strategy: str, params: Mapping[str, str]) -> tuple[list[SweepTrade], Decimal, bool]:
    """The fills of one combination with Decimal prices and `FeeModel.fee` fees, its final equity, and whether it is exact."""
    combination = _combination(strategy, market.series.symbol, params)
    deviation = rolling_std(market.closes, combination.first) if combination.kind == _BOLLINGER else np.zeros(0)
    fills = np.zeros(len(market.series) + 1, dtype=np.int64)
    stats = _run_one(market, combination, deviation, fills, _NO_CURVE)
    count = int(stats[_COLUMN["trades"]])
    trades: list[SweepTrade] = []
    cash, held = market.config.capital, Decimal(0)
    for signed in fills[:count].tolist():
        buy = signed >= 0
        index = signed if buy else -signed - 1
        units = int(market.buy_units[index] if buy else market.sell_units[index])
        price = Decimal(units).scaleb(-market.fill_places)
        quantity = combination.quantity
        fee = market.config.fee.fee(quantity * price)
        trades.append(SweepTrade(int(market.series.ts[index]), Side.BUY if buy else Side.SELL, quantity, price, fee))
        cash += (-quantity * price if buy else quantity * price) - fee
        held += quantity if buy else -quantity
    last = market.series.price(int(market.series.close[-1]))
    return trades, cash + held * last, not stats[_COLUMN["inexact"]]


@dataclass(frozen=True, slots=True)
class Agreement:
    """One combination run both ways: the sweep's exact trades against the event-driven engine's."""

    params: dict[str, str]
    sweep_trades: int
    engine_trades: int
    sweep_final_equity: Decimal
    engine_final_equity: Decimal
    exact: bool
    """False when the sweep flagged the combination (the participation cap binds): not compared."""
    first_difference: str | None = field(default=None)

    @property
    def agrees(self) -> bool:
        """Same fills (time, side, quantity, price, fee) and final equity to the cent."""
        return self.exact and self.first_difference is None


def _key(trade: TradeRecord | SweepTrade) -> tuple[str, str, Decimal, Decimal, Decimal]:
    ts = trade.ts.isoformat() if isinstance(trade, TradeRecord) else utc_of(trade.ts_us).isoformat()
    return (ts, trade.side.value, trade.quantity, trade.price, trade.fee)


def agree(market: SweepMarket, strategy: str, params: Mapping[str, str]) -> Agreement:
    """Re-run `params` in the event-driven engine and compare its fills with the sweep's, one by one."""
    trades, final_equity, exact = exact_trades(market, strategy, params)
    series = market.series
    result = run_backtest(build(strategy, [series.symbol], params), [series], market.config, {series.symbol: market.instrument})
    ours = [_key(t) for t in trades]
    theirs = [_key(t) for t in result.trades]
    difference = None
    if ours != theirs:
        at = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), min(len(ours), len(theirs)))
        difference = (
            f"fill {at}: sweep {ours[at] if at < len(ours) else 'none'}, engine {theirs[at] if at < len(theirs) else 'none'}"
        )
    elif final_equity.quantize(Decimal("0.01")) != result.final_equity.quantize(Decimal("0.01")):
        difference = f"final equity: sweep {final_equity}, engine {result.final_equity}"
    return Agreement(dict(params), len(ours), len(theirs), final_equity, result.final_equity, exact, difference)


# -- the heatmap -----------------------------------------------------------------------------------


def varying(result: SweepResult) -> list[str]:
    """The parameters with more than one value."""
    return [name for name, values in result.grid.items() if len(values) > 1]


def write_heatmap(result: SweepResult, path: Path, metric: str = "sharpe") -> bool:
    """A heatmap PNG of `metric` over the first two varying parameters (best over any others); False without two."""
    names = varying(result)
    if len(names) < 2:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, columns = names[0], names[1]
    row_values, column_values = result.grid[rows], result.grid[columns]
    table = np.full((len(row_values), len(column_values)), np.nan)
    values = result.column(metric)
    for combo, value in zip(result.combos, values.tolist(), strict=True):
        r, c = row_values.index(combo[rows]), column_values.index(combo[columns])
        if not math.isnan(value) and (math.isnan(table[r, c]) or value > table[r, c]):
            table[r, c] = value
    figure, axes = plt.subplots(figsize=(1.0 + 0.7 * len(column_values), 1.0 + 0.5 * len(row_values)), dpi=100)
    image = axes.imshow(table, cmap="RdYlGn", aspect="auto", origin="lower")
    axes.set_xticks(range(len(column_values)), column_values)
    axes.set_yticks(range(len(row_values)), row_values)
    axes.set_xlabel(columns)
    axes.set_ylabel(rows)
    axes.set_title(f"{result.strategy} {result.symbol}: {metric}")
    if table.size <= 400:
        for (r, c), value in np.ndenumerate(table):
            if not math.isnan(value):
                axes.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7)
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return True
