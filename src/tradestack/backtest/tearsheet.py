"""A backtest's tearsheet: equity and drawdown, monthly returns, trades on the price chart; a PNG and one HTML page.

The HTML page is self-contained: its charts are PNGs embedded as ``data:`` URIs, its style is
inline, it has no script and links to nothing, so it opens offline and can be mailed as one file.
Charts are drawn from floats (matplotlib); the tables print the run's exact figures as stored.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from tradestack.backtest.data import BarSeries, FloatArray, IntArray, microseconds_of, utc_of
from tradestack.backtest.engine import BacktestResult
from tradestack.backtest.metrics import Metrics
from tradestack.core.money import plain

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MAX_FILL_ROWS = 500
"""Fills listed in the HTML table (all of them are drawn on the price chart)."""


@dataclass(frozen=True, slots=True)
class TearsheetFill:
    """One fill as the tearsheet shows it."""

    symbol: str
    ts_us: int
    side: str
    quantity: str
    price: str
    fee: str


@dataclass(frozen=True, slots=True, eq=False)
class Tearsheet:
    """What a tearsheet draws: the equity curve, the fills, the closes of each symbol, the statistics."""

    title: str
    capital: float
    equity_ts: IntArray
    equity: FloatArray
    fills: tuple[TearsheetFill, ...]
    closes: Mapping[str, tuple[IntArray, FloatArray]]
    """Each symbol's bar times (epoch microseconds) and closes; empty when the bars are not at hand."""
    metrics: Mapping[str, Any]
    notes: tuple[str, ...] = field(default=())

    @classmethod
    def of_result(cls, result: BacktestResult, metrics: Metrics, series: Sequence[BarSeries], title: str) -> Tearsheet:
        """The tearsheet of a run just made."""
        return cls(
            title=title,
            capital=float(result.config.capital),
            equity_ts=result.equity_ts,
            equity=result.equity,
            fills=tuple(
                TearsheetFill(t.symbol, microseconds_of(t.ts), t.side.value, plain(t.quantity), plain(t.price), plain(t.fee))
                for t in result.trades
            ),
            closes={s.symbol: (s.ts, s.floats(s.close)) for s in series},
            metrics={f.name: getattr(metrics, f.name) for f in fields(metrics)},
        )

    @classmethod
    def of_document(
        cls, document: Mapping[str, Any], metrics: Mapping[str, Any], capital: str, series: Sequence[BarSeries], title: str
    ) -> Tearsheet:
        """The tearsheet of a stored run (`report.result_document`), with the bars when they could be read again."""
        points = document.get("equity", [])
        notes = () if series else ("The run's bars are not at hand: no price chart.",)
        return cls(
            title=title,
            capital=float(capital),
            equity_ts=np.asarray([microseconds_of(datetime.fromisoformat(p["ts"])) for p in points], dtype=np.int64),
            equity=np.asarray([float(p["equity"]) for p in points], dtype=np.float64),
            fills=tuple(
                TearsheetFill(
                    f["symbol"], microseconds_of(datetime.fromisoformat(f["ts"])), f["side"], f["quantity"], f["price"], f["fee"]
                )
                for f in document.get("fills", [])
            ),
            closes={s.symbol: (s.ts, s.floats(s.close)) for s in series},
            metrics=dict(metrics),
            notes=notes,
        )


def drawdown(equity: FloatArray, capital: float) -> FloatArray:
    """Equity below its running peak (the capital counts as the first peak), as a fraction: 0 at a peak."""
    peaks = np.maximum.accumulate(np.r_[capital, equity])[1:]
    out: FloatArray = equity / peaks - 1.0
    return out


def monthly_returns(equity_ts: IntArray, equity: FloatArray, capital: float) -> tuple[list[int], FloatArray]:
    """Years and a (years x 12) table of each month's return (last equity of the month over the one before); NaN: no bars."""
    if len(equity) == 0:
        return [], np.zeros((0, 12))
    months = equity_ts.astype("datetime64[us]").astype("datetime64[M]").astype(np.int64)  # months since 1970-01
    last_of_month = np.r_[months[1:] != months[:-1], True]
    month_keys, month_end = months[last_of_month], equity[last_of_month]
    previous = np.r_[capital, month_end[:-1]]
    returns = month_end / previous - 1.0
    first_year, last_year = 1970 + int(month_keys[0]) // 12, 1970 + int(month_keys[-1]) // 12
    years = list(range(first_year, last_year + 1))
    table = np.full((len(years), 12), np.nan)
    for key, value in zip(month_keys.tolist(), returns.tolist(), strict=True):
        table[1970 + key // 12 - first_year, key % 12] = value
    return years, table


def _dates(ts: IntArray) -> Any:
    return ts.astype("datetime64[us]")


def _figure_png(figure: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _draw_equity(axes: Any, sheet: Tearsheet) -> None:
    axes.plot(_dates(sheet.equity_ts), sheet.equity, color="#1f4e79", linewidth=1)
    axes.axhline(sheet.capital, color="grey", linewidth=0.5, linestyle="--")
    axes.set_title("Equity")


def _draw_drawdown(axes: Any, sheet: Tearsheet) -> None:
    under = drawdown(sheet.equity, sheet.capital) * 100
    axes.fill_between(_dates(sheet.equity_ts), under, 0, color="#c0392b", alpha=0.5, linewidth=0)
    axes.set_title("Drawdown (%)")


def _draw_monthly(axes: Any, sheet: Tearsheet) -> None:
    years, table = monthly_returns(sheet.equity_ts, sheet.equity, sheet.capital)
    if not years:
        axes.set_axis_off()
        return
    limit = float(np.nanmax(np.abs(table))) * 100 if np.isfinite(table).any() else 1.0
    axes.imshow(table * 100, cmap="RdYlGn", vmin=-limit, vmax=limit, aspect="auto")
    axes.set_xticks(range(12), MONTHS)
    axes.set_yticks(range(len(years)), [str(y) for y in years])
    if len(years) <= 25:
        for (row, column), value in np.ndenumerate(table):
            if not math.isnan(value):
                axes.text(column, row, f"{value * 100:.1f}", ha="center", va="center", fontsize=6)
    axes.set_title("Monthly returns (%)")


def _draw_trades(axes: Any, sheet: Tearsheet, symbol: str) -> None:
    ts, closes = sheet.closes[symbol]
    axes.plot(_dates(ts), closes, color="#555555", linewidth=0.8)
    for side, marker, colour in (("buy", "^", "#1e8449"), ("sell", "v", "#c0392b")):
        mine = [f for f in sheet.fills if f.symbol == symbol and f.side == side]
        if mine:
            axes.scatter(
                _dates(np.asarray([f.ts_us for f in mine], dtype=np.int64)),
                [float(f.price) for f in mine],
                marker=marker,
                color=colour,
                s=18,
                label=f"{side} ({len(mine)})",
                zorder=3,
            )
    axes.set_title(f"{symbol}: closes and fills")
    if any(f.symbol == symbol for f in sheet.fills):
        axes.legend(loc="upper left", fontsize=7)


def charts(sheet: Tearsheet) -> dict[str, bytes]:
    """PNG images: ``performance`` (equity, drawdown), ``monthly`` and ``trades-<symbol>`` for each symbol with bars."""
    plt = _pyplot()
    images: dict[str, bytes] = {}
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5.5), dpi=100, sharex=True, height_ratios=[3, 1.3])
    _draw_equity(top, sheet)
    _draw_drawdown(bottom, sheet)
    figure.tight_layout()
    images["performance"] = _figure_png(figure)
    years = len(monthly_returns(sheet.equity_ts, sheet.equity, sheet.capital)[0])
    figure, axes = plt.subplots(figsize=(10, 1.2 + 0.28 * max(years, 1)), dpi=100)
    _draw_monthly(axes, sheet)
    figure.tight_layout()
    images["monthly"] = _figure_png(figure)
    for symbol in sheet.closes:
        figure, axes = plt.subplots(figsize=(10, 3.5), dpi=100)
        _draw_trades(axes, sheet, symbol)
        figure.tight_layout()
        images[f"trades-{symbol}"] = _figure_png(figure)
    return images


def summary_png(sheet: Tearsheet) -> bytes:
    """The whole tearsheet as one PNG: equity, drawdown, monthly returns, and the trades of up to three symbols."""
    plt = _pyplot()
    symbols = list(sheet.closes)[:3]
    ratios = [3.0, 1.3, 2.2, *([2.2] * len(symbols))]
    figure, axes = plt.subplots(len(ratios), 1, figsize=(11, sum(ratios) * 1.25 + 1), dpi=100, height_ratios=ratios)
    _draw_equity(axes[0], sheet)
    _draw_drawdown(axes[1], sheet)
    _draw_monthly(axes[2], sheet)
    for row, symbol in enumerate(symbols, start=3):
        _draw_trades(axes[row], sheet, symbol)
    figure.suptitle(sheet.title)
    figure.tight_layout()
    return _figure_png(figure)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.4f}"
    return "-" if value is None else html.escape(str(value))


def _image(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def page(sheet: Tearsheet, images: Mapping[str, bytes]) -> str:
    """The self-contained HTML page: charts inline as data: URIs, the statistics, the monthly table and the fills."""
    metrics = "".join(f"<tr><th>{html.escape(k)}</th><td>{_cell(v)}</td></tr>" for k, v in sheet.metrics.items())
    years, table = monthly_returns(sheet.equity_ts, sheet.equity, sheet.capital)
    monthly_rows = "".join(
        f"<tr><th>{year}</th>"
        + "".join("<td></td>" if math.isnan(v) else f'<td class="{"up" if v >= 0 else "down"}">{v * 100:.2f}</td>' for v in row)
        + "</tr>"
        for year, row in zip(years, table.tolist(), strict=True)
    )
    fills = "".join(
        f"<tr><td>{utc_of(f.ts_us):%Y-%m-%d %H:%M}</td><td>{html.escape(f.symbol)}</td><td>{f.side}</td>"
        f"<td>{html.escape(f.quantity)}</td><td>{html.escape(f.price)}</td><td>{html.escape(f.fee)}</td></tr>"
        for f in sheet.fills[:MAX_FILL_ROWS]
    )
    more = f"<p>{len(sheet.fills) - MAX_FILL_ROWS} more fills not listed.</p>" if len(sheet.fills) > MAX_FILL_ROWS else ""
    notes = "".join(f"<p class=note>{html.escape(n)}</p>" for n in sheet.notes)
    trades = "".join(_image(png, name) for name, png in images.items() if name.startswith("trades-"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(sheet.title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}}
table{{border-collapse:collapse;margin:1em 0;font-size:13px}}
th,td{{border:1px solid #ddd;padding:3px 8px;text-align:right}}
th{{background:#f4f4f4}} td.up{{background:#e3f4e8}} td.down{{background:#f9e0dd}}
img{{max-width:100%;display:block;margin:1em 0}} .note{{color:#a04000}}
</style></head><body>
<h1>{html.escape(sheet.title)}</h1>{notes}
<h2>Equity and drawdown</h2>{_image(images["performance"], "equity and drawdown")}
<h2>Statistics</h2><table>{metrics}</table>
<h2>Monthly returns (%)</h2>{_image(images["monthly"], "monthly returns")}
<table><tr><th></th>{"".join(f"<th>{m}</th>" for m in MONTHS)}</tr>{monthly_rows}</table>
<h2>Trades</h2>{trades}
<table><tr><th>time (UTC)</th><th>symbol</th><th>side</th><th>quantity</th><th>price</th><th>fee</th></tr>{fills}</table>{more}
</body></html>
"""


def write(sheet: Tearsheet, directory: Path, stem: str = "tearsheet") -> tuple[Path, Path]:
    """Write ``<stem>.png`` and ``<stem>.html`` into `directory`; their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    png, page_path = directory / f"{stem}.png", directory / f"{stem}.html"
    png.write_bytes(summary_png(sheet))
    page_path.write_text(page(sheet, charts(sheet)), encoding="utf-8")
    return png, page_path
