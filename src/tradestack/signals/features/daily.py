"""Daily-bar features in the spirit of Qlib's Alpha158, for every symbol at once.

Inputs are (days x symbols) float arrays aligned on one calendar; a missing bar is NaN. Every
feature at day t is computed only from bars at t and before (trailing windows, lags into the
past), so nothing leaks from the future; a window that holds a NaN gives NaN. Price features are
divided by the day's close so they compare across symbols. Close-only series (indices, a user's
closes) get `CLOSE_ONLY`, the subset that needs nothing but closes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

Array = npt.NDArray[np.float64]

WINDOWS = (5, 10, 20, 30, 60)
"""Default look-back windows in bars, as Alpha158."""

LOOKBACK = max(WINDOWS) + 1
"""Rows a feature at row t reads with the default windows: t and the `max(WINDOWS)` before it (a window of
changes, or ``ROC60``'s lag, reaches one row before the window of closes)."""

EPS = 1e-12
"""Added to denominators that can be zero."""

CANDLE = ("KMID", "KLEN", "KMID2", "KUP", "KUP2", "KLOW", "KLOW2", "KSFT", "KSFT2", "OPEN0", "HIGH0", "LOW0")
CLOSE_ROLLING = (
    "ROC",
    "MA",
    "STD",
    "BETA",
    "RSQR",
    "RESI",
    "QTLU",
    "QTLD",
    "RANK",
    "CNTP",
    "CNTN",
    "CNTD",
    "SUMP",
    "SUMN",
    "SUMD",
)
OHLCV_ROLLING = (
    "MAX", "MIN", "RSV", "IMAX", "IMIN", "IMXD", "CORR", "CORD", "VMA", "VSTD", "WVMA", "VSUMP", "VSUMN", "VSUMD",
)  # fmt: skip


def feature_names(*, windows: Sequence[int] = WINDOWS, close_only: bool = False) -> list[str]:
    """The names `daily_features` returns, in order."""
    rolling = CLOSE_ROLLING if close_only else CLOSE_ROLLING + OHLCV_ROLLING
    names = [] if close_only else list(CANDLE)
    return names + [f"{name}{d}" for name in rolling for d in windows]


def lag(x: Array, d: int) -> Array:
    """`x` shifted `d` rows into the future (row t holds row t-d); the first `d` rows are NaN."""
    out = np.full_like(x, np.nan)
    if d < x.shape[0]:
        out[d:] = x[: x.shape[0] - d]
    return out


def windows_of(x: Array, d: int) -> Array:
    """The trailing window of `d` rows ending at each row: shape (T, N, d); rows before the first full window are NaN."""
    padded = np.concatenate([np.full((d - 1, *x.shape[1:]), np.nan), x], axis=0)
    return sliding_window_view(padded, d, axis=0)


def _complete(w: Array) -> npt.NDArray[np.bool_]:
    return np.asarray(~np.isnan(w).any(axis=-1), dtype=np.bool_)


def _masked(values: Array, complete: npt.NDArray[np.bool_]) -> Array:
    return np.where(complete, values, np.nan)


def rolling_mean(x: Array, d: int) -> Array:
    """Mean of the trailing `d` rows (NaN unless all `d` are present)."""
    return np.asarray(windows_of(x, d).mean(axis=-1), dtype=np.float64)


def rolling_sum(x: Array, d: int) -> Array:
    """Sum of the trailing `d` rows."""
    return np.asarray(windows_of(x, d).sum(axis=-1), dtype=np.float64)


def _quantile_of_sorted(ordered: Array, q: float) -> Array:
    """Quantile `q` of windows already sorted along the last axis, interpolated linearly (numpy's default)."""
    position = q * (ordered.shape[-1] - 1)
    below = int(np.floor(position))
    above = min(below + 1, ordered.shape[-1] - 1)
    fraction = position - below
    low, high = ordered[..., below], ordered[..., above]
    return np.asarray(low + (high - low) * fraction, dtype=np.float64)


def _regression(w: Array) -> tuple[Array, Array, Array]:
    """Slope, R² and last residual of a least-squares line through each window (x = 0..d-1)."""
    d = w.shape[-1]
    x = np.arange(d, dtype=np.float64)
    xm = x - x.mean()
    sxx = float((xm**2).sum())
    ymean = w.mean(axis=-1)
    yc = w - ymean[..., None]
    sxy = (yc * xm).sum(axis=-1)
    syy = (yc**2).sum(axis=-1)
    slope = sxy / sxx
    rsq = sxy**2 / (sxx * syy + EPS)
    resid = w[..., -1] - (ymean + slope * xm[-1])
    return slope, rsq, resid


def _rolling_corr(a: Array, b: Array, d: int) -> Array:
    wa, wb = windows_of(a, d), windows_of(b, d)
    ac = wa - wa.mean(axis=-1, keepdims=True)
    bc = wb - wb.mean(axis=-1, keepdims=True)
    denom = np.sqrt((ac**2).sum(axis=-1) * (bc**2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (ac * bc).sum(axis=-1) / denom
    return np.where(np.isfinite(corr), corr, np.nan)


def daily_features(
    close: Array,
    *,
    open_: Array | None = None,
    high: Array | None = None,
    low: Array | None = None,
    volume: Array | None = None,
    windows: Sequence[int] = WINDOWS,
) -> dict[str, Array]:
    """Alpha158-style features by name, each (T, N) like `close`.

    With only `close`, the close-only subset; with all of open, high, low and volume, the whole
    library. Names are as Qlib's (e.g. ``ROC5``, ``RSQR20``, ``CORD60``).
    """
    given = [a is not None for a in (open_, high, low, volume)]
    if any(given) and not all(given):
        raise ValueError("give open, high, low and volume together, or only close")
    close = np.asarray(close, dtype=np.float64)
    if close.ndim != 2:
        raise ValueError(f"close must be (days, symbols), got shape {close.shape}")
    out: dict[str, Array] = {}
    c = close
    prev = lag(c, 1)
    change = c - prev
    with np.errstate(invalid="ignore", divide="ignore"):
        if open_ is not None and high is not None and low is not None and volume is not None:
            o, h, lo, v = (np.asarray(a, dtype=np.float64) for a in (open_, high, low, volume))
            rng = h - lo + EPS
            out["KMID"] = (c - o) / o
            out["KLEN"] = (h - lo) / o
            out["KMID2"] = (c - o) / rng
            out["KUP"] = (h - np.maximum(o, c)) / o
            out["KUP2"] = (h - np.maximum(o, c)) / rng
            out["KLOW"] = (np.minimum(o, c) - lo) / o
            out["KLOW2"] = (np.minimum(o, c) - lo) / rng
            out["KSFT"] = (2 * c - h - lo) / o
            out["KSFT2"] = (2 * c - h - lo) / rng
            out["OPEN0"] = o / c
            out["HIGH0"] = h / c
            out["LOW0"] = lo / c
        else:
            o = h = lo = v = None  # type: ignore[assignment]
        up = np.where(np.isnan(change), np.nan, np.maximum(change, 0.0))
        down = np.where(np.isnan(change), np.nan, np.maximum(-change, 0.0))
        pos = np.where(np.isnan(change), np.nan, (change > 0).astype(np.float64))
        neg = np.where(np.isnan(change), np.nan, (change < 0).astype(np.float64))
        for d in windows:
            wc = windows_of(c, d)
            complete = _complete(wc)
            slope, rsq, resid = _regression(wc)
            out[f"ROC{d}"] = lag(c, d) / c
            out[f"MA{d}"] = wc.mean(axis=-1) / c
            out[f"STD{d}"] = wc.std(axis=-1) / c
            out[f"BETA{d}"] = slope / c
            out[f"RSQR{d}"] = rsq
            out[f"RESI{d}"] = resid / c
            ordered = np.sort(np.where(complete[..., None], wc, 0.0), axis=-1)
            out[f"QTLU{d}"] = _masked(_quantile_of_sorted(ordered, 0.8), complete) / c
            out[f"QTLD{d}"] = _masked(_quantile_of_sorted(ordered, 0.2), complete) / c
            # Percentile rank of today's close within its window (ties count half), as pandas' rank(pct=True).
            below = (wc < wc[..., -1:]).sum(axis=-1)
            equal = (wc == wc[..., -1:]).sum(axis=-1)
            out[f"RANK{d}"] = _masked((below + (equal + 1) / 2) / d, complete)
            out[f"CNTP{d}"] = rolling_mean(pos, d)
            out[f"CNTN{d}"] = rolling_mean(neg, d)
            out[f"CNTD{d}"] = out[f"CNTP{d}"] - out[f"CNTN{d}"]
            sum_up, sum_down = rolling_sum(up, d), rolling_sum(down, d)
            total = sum_up + sum_down + EPS
            out[f"SUMP{d}"] = sum_up / total
            out[f"SUMN{d}"] = sum_down / total
            out[f"SUMD{d}"] = (sum_up - sum_down) / total
        if o is None or h is None or lo is None or v is None:
            return _finite(out, feature_names(windows=windows, close_only=True))
        vprev = lag(v, 1)
        abs_ret_vol = np.abs(c / prev - 1) * v
        vchange = v - vprev
        vup = np.where(np.isnan(vchange), np.nan, np.maximum(vchange, 0.0))
        vdown = np.where(np.isnan(vchange), np.nan, np.maximum(-vchange, 0.0))
        log_volume = np.log(v + 1)
        log_vratio = np.log(v / vprev + 1)
        for d in windows:
            wh, wl = windows_of(h, d), windows_of(lo, d)
            hmax, lmin = wh.max(axis=-1), wl.min(axis=-1)
            out[f"MAX{d}"] = hmax / c
            out[f"MIN{d}"] = lmin / c
            out[f"RSV{d}"] = (c - lmin) / (hmax - lmin + EPS)
            # Days since the window's high / low, as a fraction of the window (0 = today).
            imax = _masked((d - 1 - np.argmax(np.nan_to_num(wh, nan=-np.inf), axis=-1)).astype(np.float64), _complete(wh))
            imin = _masked((d - 1 - np.argmin(np.nan_to_num(wl, nan=np.inf), axis=-1)).astype(np.float64), _complete(wl))
            out[f"IMAX{d}"] = imax / d
            out[f"IMIN{d}"] = imin / d
            out[f"IMXD{d}"] = (imax - imin) / d
            out[f"CORR{d}"] = _rolling_corr(c, log_volume, d)
            out[f"CORD{d}"] = _rolling_corr(c / prev, log_vratio, d)
            out[f"VMA{d}"] = rolling_mean(v, d) / (v + EPS)
            out[f"VSTD{d}"] = windows_of(v, d).std(axis=-1) / (v + EPS)
            out[f"WVMA{d}"] = windows_of(abs_ret_vol, d).std(axis=-1) / (rolling_mean(abs_ret_vol, d) + EPS)
            vsum_up, vsum_down = rolling_sum(vup, d), rolling_sum(vdown, d)
            vtotal = vsum_up + vsum_down + EPS
            out[f"VSUMP{d}"] = vsum_up / vtotal
            out[f"VSUMN{d}"] = vsum_down / vtotal
            out[f"VSUMD{d}"] = (vsum_up - vsum_down) / vtotal
    return _finite(out, feature_names(windows=windows))


def _finite(out: dict[str, Array], names: list[str]) -> dict[str, Array]:
    """The features in `names` order, infinities (a zero denominator) as NaN."""
    return {name: np.where(np.isfinite(out[name]), out[name], np.nan) for name in names}


def momentum(close: Array, d: int = 20) -> Array:
    """Trailing `d`-bar return close[t] / close[t-d] - 1 (the baseline signal)."""
    close = np.asarray(close, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return close / lag(close, d) - 1


def forward_return(close: Array, horizon: int) -> Array:
    """The label: close[t+horizon] / close[t] - 1 (uses the future by definition; NaN for the last `horizon` rows)."""
    close = np.asarray(close, dtype=np.float64)
    ahead = np.full_like(close, np.nan)
    if horizon < close.shape[0]:
        ahead[: close.shape[0] - horizon] = close[horizon:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return ahead / close - 1
