"""OBI and OFI in one compiled pass (Numba), bit-equal to the NumPy functions in `orderbook`.

Imported only when asked for (`orderbook.obi_ofi(..., engine="numba")`): importing Numba costs
one to two seconds and compiling the kernel about as much again on first use (then cached on
disk), so the API, which computes one snapshot at a time in plain Python, never pays for it.

One pass over the snapshots reads each level once and keeps the touch of the previous snapshot
and the recent OFI contributions in cache, where NumPy streams the arrays once per operation.
Bit-equality holds because the kernel does the same floating-point operations in the same order
as the NumPy path: level sums best level first, window sums oldest change first, no fast-math.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def obi_ofi_kernel(
    bid_price: Array,
    bid_size: Array,
    ask_price: Array,
    ask_size: Array,
    ks: npt.NDArray[np.int64],
    ws: npt.NDArray[np.int64],
    out: Array,
    events: Array,
) -> None:  # pragma: no cover - compiled; covered through its bit-equality tests
    """Fill `out`'s rows: OBI for each k of `ks` (ascending), then OFI for each window of `ws`.

    `out` is (len(ks) + len(ws), snapshots) and `events` (snapshots,) scratch, both allocated by the
    caller: NumPy asks Linux for transparent huge pages on large arrays, Numba's allocator does not,
    and first-touch page faults on fresh output were the largest single cost.
    """
    levels, snapshots = bid_size.shape
    obi_rows = ks.shape[0]
    for t in range(snapshots):
        qb = bid_size[0, t]
        qa = ask_size[0, t]
        bid = qb
        ask = qa
        row = 0
        for level in range(levels):
            if level > 0:
                bid += bid_size[level, t]
                ask += ask_size[level, t]
            while row < obi_rows and ks[row] == level + 1:
                out[row, t] = (bid - ask) / (bid + ask)
                row += 1
        if t == 0:
            events[0] = 0.0
        else:
            pb, pa = bid_price[0, t], ask_price[0, t]
            pb0, qb0, pa0, qa0 = bid_price[0, t - 1], bid_size[0, t - 1], ask_price[0, t - 1], ask_size[0, t - 1]
            bid_in = qb if pb >= pb0 else 0.0
            bid_out = qb0 if pb <= pb0 else 0.0
            ask_in = qa if pa <= pa0 else 0.0
            ask_out = qa0 if pa >= pa0 else 0.0
            events[t] = bid_in - bid_out - ask_in + ask_out
        for i in range(ws.shape[0]):
            w = ws[i]
            if t < w:
                out[obi_rows + i, t] = np.nan
                continue
            total = events[t - w + 1]
            for offset in range(1, w):
                total += events[t - w + 1 + offset]
            out[obi_rows + i, t] = total
