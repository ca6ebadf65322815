"""Daily and order-book features: no look-ahead, and equal to independent straightforward computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tradestack.signals.features import daily, orderbook
from tradestack.signals.features.orderbook import Books


def _bars(rng: np.random.Generator, days: int = 200, symbols: int = 4) -> dict[str, np.ndarray]:
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (days, symbols)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.005, close.shape))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, close.shape))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, close.shape))
    volume = rng.uniform(1e5, 1e6, close.shape)
    close[:15, 0] = np.nan  # a symbol that lists later
    for a in (open_, high, low, volume):
        a[:15, 0] = np.nan
    return {"close": close, "open_": open_, "high": high, "low": low, "volume": volume}


@pytest.mark.parametrize("close_only", [False, True])
def test_changing_future_bars_changes_no_feature_up_to_that_day(close_only: bool) -> None:
    rng = np.random.default_rng(7)
    bars = _bars(rng)
    if close_only:
        bars = {"close": bars["close"]}
    before = daily.daily_features(**bars)
    assert list(before) == daily.feature_names(close_only=close_only)
    t = 120
    perturbed = {name: a.copy() for name, a in bars.items()}
    for a in perturbed.values():
        a[t + 1 :] *= rng.uniform(0.5, 1.5, a[t + 1 :].shape)
    after = daily.daily_features(**perturbed)
    changed_later = 0
    for name in before:
        np.testing.assert_array_equal(before[name][: t + 1], after[name][: t + 1], err_msg=name)
        changed_later += int(not np.array_equal(before[name][t + 1 :], after[name][t + 1 :], equal_nan=True))
    # The perturbation is real: every feature moves after t.
    assert changed_later == len(before)


def test_a_feature_that_peeks_ahead_is_caught() -> None:
    """The look-ahead check itself can fail: a centred moving average is flagged."""
    rng = np.random.default_rng(8)
    close = _bars(rng)["close"]
    centred = pd.DataFrame(close).rolling(5, center=True).mean().to_numpy()
    perturbed = close.copy()
    perturbed[121:] *= 1.1
    changed = pd.DataFrame(perturbed).rolling(5, center=True).mean().to_numpy()
    assert not np.array_equal(centred[:121], changed[:121], equal_nan=True)


def test_rolling_features_equal_pandas() -> None:
    rng = np.random.default_rng(9)
    bars = _bars(rng)
    f = daily.daily_features(**bars, windows=(5, 20))
    c = pd.DataFrame(bars["close"])
    v = pd.DataFrame(bars["volume"])
    h = pd.DataFrame(bars["high"])
    np.testing.assert_allclose(f["MA20"], (c.rolling(20).mean() / c).to_numpy(), rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(f["STD20"], (c.rolling(20).std(ddof=0) / c).to_numpy(), rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(f["ROC5"], (c.shift(5) / c).to_numpy(), rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(f["MAX20"], (h.rolling(20).max() / c).to_numpy(), rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(f["RANK20"], c.rolling(20).rank(pct=True).to_numpy(), rtol=1e-12, equal_nan=True)
    corr = c.rolling(20).corr(np.log(v + 1)).to_numpy()
    np.testing.assert_allclose(f["CORR20"], corr, rtol=1e-7, atol=1e-9, equal_nan=True)
    quantile = c.rolling(20).quantile(0.8).to_numpy()
    np.testing.assert_allclose(f["QTLU20"], quantile / c.to_numpy(), rtol=1e-12, equal_nan=True)
    # Regression slope against numpy.polyfit on one window.
    window = bars["close"][100 - 19 : 101, 2]
    slope, intercept = np.polyfit(np.arange(20.0), window, 1)
    assert f["BETA20"][100, 2] == pytest.approx(slope / bars["close"][100, 2], rel=1e-9)
    assert f["RESI20"][100, 2] == pytest.approx((window[-1] - (intercept + slope * 19)) / window[-1], rel=1e-6, abs=1e-12)


def test_mixed_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="together"):
        daily.daily_features(np.ones((10, 2)), open_=np.ones((10, 2)))


# -- order book -------------------------------------------------------------------------------


def _random_books(rng: np.random.Generator, snapshots: int = 2000, levels: int = 10) -> Books:
    tick = 0.01
    mid_ticks = 10_000 + np.cumsum(rng.integers(-2, 3, snapshots))
    half = rng.integers(1, 4, snapshots)
    bid0 = mid_ticks - half
    ask0 = mid_ticks + half
    gaps_b = np.cumsum(rng.integers(1, 3, (snapshots, levels)), axis=1) - 1
    gaps_a = np.cumsum(rng.integers(1, 3, (snapshots, levels)), axis=1) - 1
    return Books.from_snapshots(
        bid_price=(bid0[:, None] - gaps_b) * tick,
        bid_size=rng.uniform(0.1, 50, (snapshots, levels)),
        ask_price=(ask0[:, None] + gaps_a) * tick,
        ask_size=rng.uniform(0.1, 50, (snapshots, levels)),
    )


def _plain_obi(books: Books, k: int) -> list[float]:
    out = []
    for t in range(len(books)):
        bid = 0.0
        ask = 0.0
        for i in range(k):
            bid += float(books.bid_size[i, t])
            ask += float(books.ask_size[i, t])
        out.append((bid - ask) / (bid + ask))
    return out


def _plain_ofi(books: Books, w: int) -> list[float]:
    e = [0.0]
    for t in range(1, len(books)):
        pb, qb, pa, qa = (float(a[0, t]) for a in (books.bid_price, books.bid_size, books.ask_price, books.ask_size))
        pb0, qb0, pa0, qa0 = (float(a[0, t - 1]) for a in (books.bid_price, books.bid_size, books.ask_price, books.ask_size))
        value = (
            (qb if pb >= pb0 else 0.0) - (qb0 if pb <= pb0 else 0.0) - (qa if pa <= pa0 else 0.0) + (qa0 if pa >= pa0 else 0.0)
        )
        e.append(value)
    out = []
    for t in range(len(books)):
        if t < w:
            out.append(float("nan"))
            continue
        total = 0.0
        for i in range(t - w + 1, t + 1):
            total += e[i]
        out.append(total)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_obi_and_ofi_equal_a_plain_loop_exactly(seed: int) -> None:
    books = _random_books(np.random.default_rng(seed))
    for k in (1, 3, 10):
        np.testing.assert_array_equal(orderbook.obi(books, k), np.array(_plain_obi(books, k)))
    for w in (1, 5, 20):
        np.testing.assert_array_equal(orderbook.ofi(books, w), np.array(_plain_ofi(books, w)))


@pytest.mark.parametrize("engine", ["numpy", "numba"])
@pytest.mark.parametrize(("snapshots", "seed"), [(2000, 1), (2000, 2), (7, 3), (1, 4)])
def test_obi_ofi_in_one_pass_equals_a_plain_loop_exactly(engine: orderbook.Engine, snapshots: int, seed: int) -> None:
    books = _random_books(np.random.default_rng(seed), snapshots=snapshots)
    columns = orderbook.obi_ofi(books, (10, 1, 3, 3), (20, 1, 5), engine=engine)  # unsorted, repeated: named, computed once
    assert list(columns) == ["obi1", "obi3", "obi10", "ofi1", "ofi5", "ofi20"]
    for k in (1, 3, 10):
        np.testing.assert_array_equal(columns[f"obi{k}"], np.array(_plain_obi(books, k)), err_msg=f"obi{k}")
    for w in (1, 5, 20):
        np.testing.assert_array_equal(columns[f"ofi{w}"], np.array(_plain_ofi(books, w)), err_msg=f"ofi{w}")


def test_obi_ofi_refuses_levels_windows_and_engines_it_cannot_compute() -> None:
    books = _random_books(np.random.default_rng(6), snapshots=10, levels=5)
    with pytest.raises(ValueError, match="between 1 and 5"):
        orderbook.obi_ofi(books, (6,), (1,))
    with pytest.raises(ValueError, match="at least 1"):
        orderbook.obi_ofi(books, (1,), (0,))
    with pytest.raises(ValueError, match="numpy or numba"):
        orderbook.obi_ofi(books, (1,), (1,), engine="cython")  # type: ignore[arg-type]


def test_microprice_spread_slope_and_trade_imbalance_equal_a_plain_loop_exactly() -> None:
    rng = np.random.default_rng(4)
    books = _random_books(rng, snapshots=500)
    buys = rng.uniform(0, 10, 500) * (rng.random(500) < 0.5)
    sells = rng.uniform(0, 10, 500) * (rng.random(500) < 0.5)
    micro, spread, (bid_slope, ask_slope) = orderbook.microprice(books), orderbook.spread(books), orderbook.depth_slope(books)
    imbalance = orderbook.trade_imbalance(buys, sells, 5)
    for t in range(len(books)):
        pb, qb, pa, qa = (float(a[0, t]) for a in (books.bid_price, books.bid_size, books.ask_price, books.ask_size))
        assert micro[t] == (pa * qb + pb * qa) / (qb + qa)
        assert spread[t] == pa - pb
        bid_depth = 0.0
        ask_depth = 0.0
        for i in range(books.levels):
            bid_depth += float(books.bid_size[i, t])
            ask_depth += float(books.ask_size[i, t])
        assert bid_slope[t] == bid_depth / (pb - float(books.bid_price[-1, t]))
        assert ask_slope[t] == ask_depth / (float(books.ask_price[-1, t]) - pa)
        if t < 4:
            assert np.isnan(imbalance[t])
            continue
        b = 0.0
        s = 0.0
        for i in range(t - 4, t + 1):
            b += float(buys[i])
            s += float(sells[i])
        if b + s > 0:
            assert imbalance[t] == (b - s) / (b + s)
        else:
            assert np.isnan(imbalance[t])


def test_book_features_use_no_later_snapshot() -> None:
    rng = np.random.default_rng(5)
    books = _random_books(rng, snapshots=300)
    before = orderbook.book_features(books)
    t = 200
    later = Books(*(a.copy() for a in (books.bid_price, books.bid_size, books.ask_price, books.ask_size)))
    later.bid_size[:, t + 1 :] *= 3.0
    later.ask_price[:, t + 1 :] += 0.05
    after = orderbook.book_features(later)
    for name in before:
        np.testing.assert_array_equal(before[name][: t + 1], after[name][: t + 1], err_msg=name)
