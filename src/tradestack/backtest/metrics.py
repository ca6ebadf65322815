"""Performance statistics of a backtest: empyrical-reloaded for the return statistics, the books for money.

Returns are the equity curve's period returns (one point per distinct bar time). Annualisation:
252 periods a year for daily (or coarser) bars, else 252 x the bars of a 6.5-hour session.
Money figures (final equity, fees paid) are the exact Decimals of the books.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from tradestack.backtest.engine import BacktestResult

_DAY_US = 86_400_000_000
_SESSION_US = 23_400_000_000  # 6.5 hours


@dataclass(frozen=True, slots=True)
class Metrics:
    """A run's statistics. Ratios are fractions (0.12 is 12 %)."""

    start_equity: Decimal
    final_equity: Decimal
    total_return: float
    annual_return: float
    annual_volatility: float
    sharpe: float
    sortino: float
    max_drawdown: float
    max_drawdown_duration_periods: int
    calmar: float
    trades: int
    round_trips: int
    hit_rate: float
    """Fraction of closing fills whose realized P&L beat their fee."""
    turnover: float
    """Traded notional divided by the average equity."""
    exposure: float
    """Fraction of periods with a position."""
    fees_paid: Decimal
    periods_per_year: int


def periods_per_year(equity_ts: np.ndarray) -> int:
    """252 for daily or coarser bars, else 252 sessions of 6.5 hours at the median bar spacing."""
    if len(equity_ts) < 2:
        return 252
    spacing = float(np.median(np.diff(equity_ts)))
    if spacing >= _DAY_US * 0.9:
        return 252
    return max(252, round(252 * _SESSION_US / spacing))


def max_drawdown_duration(equity: np.ndarray) -> int:
    """Longest run of periods spent below a previous equity peak."""
    if len(equity) == 0:
        return 0
    peaks = np.maximum.accumulate(equity)
    below = equity < peaks
    longest = current = 0
    for flag in below.tolist():
        current = current + 1 if flag else 0
        longest = max(longest, current)
    return longest


def _number(value: object) -> float:
    result = float(value)  # type: ignore[arg-type]
    return result if np.isfinite(result) else float("nan")


def compute_metrics(result: BacktestResult) -> Metrics:
    """The statistics of `result`."""
    import empyrical  # type: ignore[import-untyped]  # pandas and scipy: seconds to import, only for a backtest

    equity = result.equity
    start = float(result.config.capital)
    curve = np.r_[start, equity]
    returns = curve[1:] / curve[:-1] - 1.0
    period = periods_per_year(result.equity_ts)
    closing = [t for t in result.trades if t.closed > 0]
    wins = sum(1 for t in closing if t.realized - t.fee > 0)
    notional = sum(float(t.quantity * t.price) for t in result.trades)
    average_equity = float(np.mean(equity)) if len(equity) else start
    return Metrics(
        start_equity=result.config.capital,
        final_equity=result.final_equity,
        total_return=_number(empyrical.cum_returns_final(returns)) if len(returns) else 0.0,
        annual_return=_number(empyrical.annual_return(returns, annualization=period)),
        annual_volatility=_number(empyrical.annual_volatility(returns, annualization=period)),
        sharpe=_number(empyrical.sharpe_ratio(returns, annualization=period)),
        sortino=_number(empyrical.sortino_ratio(returns, annualization=period)),
        max_drawdown=_number(empyrical.max_drawdown(returns)),
        max_drawdown_duration_periods=max_drawdown_duration(curve),
        calmar=_number(empyrical.calmar_ratio(returns, annualization=period)),
        trades=len(result.trades),
        round_trips=len(closing),
        hit_rate=wins / len(closing) if closing else float("nan"),
        turnover=notional / average_equity if average_equity else float("nan"),
        exposure=float(np.mean(result.exposure > 0)) if len(result.exposure) else 0.0,
        fees_paid=result.fees_paid,
        periods_per_year=period,
    )
