"""Order-book features on L2 snapshots, vectorised over snapshots.

A book is four level-major (L x S) arrays: bid and ask prices and sizes for L levels (best
first) of S snapshots. Level-major keeps each level's values contiguous, so the per-level passes
stream memory once instead of striding through whole rows. Every feature at snapshot t uses snapshots up to t only.

- ``obi(k)``: order-book imbalance over the best k levels, (bid depth - ask depth) / (bid + ask).
- ``ofi(w)``: Cont, Kukanov and Stoikov's order-flow imbalance: per snapshot
  e_t = 1[Pb_t >= Pb_t-1] qb_t - 1[Pb_t <= Pb_t-1] qb_t-1 - 1[Pa_t <= Pa_t-1] qa_t + 1[Pa_t >= Pa_t-1] qa_t-1,
  summed over the last w snapshots (NaN until w changes exist).
- ``microprice``: (Pa qb + Pb qa) / (qb + qa) at the touch; ``spread``; ``depth_slope``: size
  over all levels per unit of price between the touch and the deepest level, per side.
- ``trade_imbalance(w)``: (buy - sell) / (buy + sell) traded volume over the last w intervals.

Sums across levels run left to right (cumulative sums) and window sums add the oldest first, so
the results equal a straightforward per-snapshot loop bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Books:
    """L levels per side (best first) of S snapshots: each array is (levels, snapshots)."""

    bid_price: Array
    bid_size: Array
    ask_price: Array
    ask_size: Array

    def __post_init__(self) -> None:
        shape = self.bid_price.shape
        if len(shape) != 2 or any(a.shape != shape for a in (self.bid_size, self.ask_price, self.ask_size)):
            raise ValueError("bid/ask prices and sizes must all be (levels, snapshots) arrays of one shape")

    @property
    def levels(self) -> int:
        """Levels per side."""
        return int(self.bid_price.shape[0])

    def __len__(self) -> int:
        return int(self.bid_price.shape[1])

    @classmethod
    def from_snapshots(cls, bid_price: Array, bid_size: Array, ask_price: Array, ask_size: Array) -> Books:
        """Books from (snapshots, levels) arrays, as one row per snapshot is usually stored."""
        return cls(*(np.ascontiguousarray(np.asarray(a, dtype=np.float64).T) for a in (bid_price, bid_size, ask_price, ask_size)))


def obi(books: Books, k: int) -> Array:
    """Order-book imbalance over the best `k` levels, in [-1, 1]."""
    if not 1 <= k <= books.levels:
        raise ValueError(f"k must be between 1 and {books.levels}, got {k}")
    bid, ask = depth(books.bid_size, k), depth(books.ask_size, k)
    return (bid - ask) / (bid + ask)


def depth(sizes: Array, k: int) -> Array:
    """Size over the best `k` levels, added best level first."""
    total: Array = sizes[0].copy()
    for i in range(1, k):
        total += sizes[i]
    return total


def ofi_events(books: Books) -> Array:
    """Cont-Kukanov-Stoikov order-flow contribution of each snapshot at the touch (0 for the first)."""
    pb, qb = books.bid_price[0], books.bid_size[0]
    pa, qa = books.ask_price[0], books.ask_size[0]
    e = np.zeros(len(books))
    if len(books) > 1:
        bid_in = np.where(pb[1:] >= pb[:-1], qb[1:], 0.0)
        bid_out = np.where(pb[1:] <= pb[:-1], qb[:-1], 0.0)
        ask_in = np.where(pa[1:] <= pa[:-1], qa[1:], 0.0)
        ask_out = np.where(pa[1:] >= pa[:-1], qa[:-1], 0.0)
        e[1:] = bid_in - bid_out - ask_in + ask_out
    return e


def window_sum(x: Array, w: int) -> Array:
    """Sum of x[t-w+1..t] added oldest first; NaN for t < w (the first row is not a change)."""
    if w < 1:
        raise ValueError(f"window must be at least 1, got {w}")
    out = np.full(x.shape[0], np.nan)
    if x.shape[0] > w:
        acc = x[1 : x.shape[0] - w + 1].copy()
        for offset in range(1, w):
            acc += x[1 + offset : x.shape[0] - w + 1 + offset]
        out[w:] = acc
    return out


def ofi(books: Books, w: int) -> Array:
    """Order-flow imbalance summed over the last `w` snapshot changes."""
    return window_sum(ofi_events(books), w)


Engine = Literal["numpy", "numba"]


def obi_ofi(
    books: Books, obi_levels: tuple[int, ...] = (1, 3, 10), ofi_windows: tuple[int, ...] = (1, 5, 20), *, engine: Engine = "numpy"
) -> dict[str, Array]:
    """`obi(k)` for each k and `ofi(w)` for each w in one pass, as ``{"obi<k>": ..., "ofi<w>": ...}``.

    The level sums of the smaller k are the first terms of the larger ones, so each level is read
    once. ``engine="numba"`` runs one compiled pass (Numba, imported and compiled on first use);
    both engines give the same values bit for bit as `obi` and `ofi`.
    """
    ks = sorted(set(obi_levels))
    ws = sorted(set(ofi_windows))
    for k in ks:
        if not 1 <= k <= books.levels:
            raise ValueError(f"k must be between 1 and {books.levels}, got {k}")
    for w in ws:
        if w < 1:
            raise ValueError(f"window must be at least 1, got {w}")
    if engine == "numba":
        from tradestack.signals.features.orderbook_jit import obi_ofi_kernel

        rows = np.empty((len(ks) + len(ws), len(books)))
        obi_ofi_kernel(
            books.bid_price,
            books.bid_size,
            books.ask_price,
            books.ask_size,
            np.array(ks, dtype=np.int64),
            np.array(ws, dtype=np.int64),
            rows,
            np.empty(len(books)),
        )
    elif engine == "numpy":
        rows = _obi_ofi_numpy(books, ks, ws)
    else:
        raise ValueError(f"engine must be numpy or numba, got {engine!r}")
    names = [f"obi{k}" for k in ks] + [f"ofi{w}" for w in ws]
    return dict(zip(names, rows, strict=True))


def _obi_ofi_numpy(books: Books, ks: list[int], ws: list[int]) -> Array:
    out = np.empty((len(ks) + len(ws), len(books)))
    bid: Array = books.bid_size[0].copy()
    ask: Array = books.ask_size[0].copy()
    total = np.empty(len(books))
    row = 0
    for level in range(ks[-1] if ks else 0):
        if level > 0:
            bid += books.bid_size[level]
            ask += books.ask_size[level]
        while row < len(ks) and ks[row] == level + 1:
            np.subtract(bid, ask, out=out[row])
            np.divide(out[row], np.add(bid, ask, out=total), out=out[row])
            row += 1
    events = ofi_events(books)
    snapshots = len(books)
    for i, w in enumerate(ws):
        row_out = out[len(ks) + i]
        row_out[: min(w, snapshots)] = np.nan
        if snapshots > w:  # window_sum, written in place
            acc = row_out[w:]
            acc[:] = events[1 : snapshots - w + 1]
            for offset in range(1, w):
                acc += events[1 + offset : snapshots - w + 1 + offset]
    return out


def mid(books: Books) -> Array:
    """Midpoint of the touch."""
    return np.asarray((books.bid_price[0] + books.ask_price[0]) / 2, dtype=np.float64)


def microprice(books: Books) -> Array:
    """Size-weighted touch price: leans towards the side with less size."""
    qb, qa = books.bid_size[0], books.ask_size[0]
    return np.asarray((books.ask_price[0] * qb + books.bid_price[0] * qa) / (qb + qa), dtype=np.float64)


def spread(books: Books) -> Array:
    """Best ask minus best bid."""
    return np.asarray(books.ask_price[0] - books.bid_price[0], dtype=np.float64)


def depth_slope(books: Books) -> tuple[Array, Array]:
    """(bid, ask): total size over all levels per unit of price from the touch to the deepest level."""
    bid = depth(books.bid_size, books.levels) / (books.bid_price[0] - books.bid_price[-1])
    ask = depth(books.ask_size, books.levels) / (books.ask_price[-1] - books.ask_price[0])
    return bid, ask


def trade_imbalance(buy_volume: Array, sell_volume: Array, w: int) -> Array:
    """(buy - sell) / (buy + sell) over the last `w` intervals; NaN when nothing traded."""
    buys = window_sum(np.concatenate([[0.0], buy_volume]), w)[1:]
    sells = window_sum(np.concatenate([[0.0], sell_volume]), w)[1:]
    total = buys + sells
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (buys - sells) / total, np.nan)


def book_features(
    books: Books,
    *,
    buy_volume: Array | None = None,
    sell_volume: Array | None = None,
    obi_levels: tuple[int, ...] = (1, 3, 5),
    ofi_windows: tuple[int, ...] = (1, 5, 20),
) -> dict[str, Array]:
    """The predictor's features by name, each of length S."""
    out: dict[str, Array] = {}
    for k in obi_levels:
        if k <= books.levels:
            out[f"obi{k}"] = obi(books, k)
    out[f"obi{books.levels}"] = obi(books, books.levels)
    m = mid(books)
    sp = spread(books)
    events = ofi_events(books)
    touch = books.bid_size[0] + books.ask_size[0]
    for w in ofi_windows:
        out[f"ofi{w}"] = window_sum(events, w) / touch
    out["micro_dev"] = (microprice(books) - m) / sp
    out["spread_rel"] = sp / m
    bid_slope, ask_slope = depth_slope(books)
    out["slope_imb"] = (bid_slope - ask_slope) / (bid_slope + ask_slope)
    if buy_volume is not None and sell_volume is not None:
        for w in ofi_windows:
            out[f"tim{w}"] = trade_imbalance(buy_volume, sell_volume, w)
    return out
