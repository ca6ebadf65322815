"""Order-by-order event files rebuilt into L2 snapshots (`tradestack data import-lob`).

A file is CSV with a header naming the columns ``timestamp, order_id, side, price, volume,
action``: `side` is bid/buy or ask/sell, `action` created, changed (the order's new remaining
volume and price) or deleted. After every event that leaves both sides with at least `depth`
price levels, the top `depth` levels of each side make one snapshot. Rows that cannot be applied
are refused with their line number and the reason: unreadable numbers or timestamps, unknown
sides or actions, non-positive prices or volumes, an order created twice, or changed or deleted
before it was created. Snapshots are saved as a NumPy archive under
``<data_dir>/lob/<name>.npz`` that `signals train-lob --lob NAME` trains on.

An optional trades file (CSV: ``timestamp, price, amount, side``, side buy or sell: the aggressor)
adds each snapshot's traded buy and sell volume since the snapshot before it (a trade at the
snapshot's own timestamp counts for it; trades after the last snapshot are left out), the input of
`orderbook.trade_imbalance`. Its bad rows are refused by line like the events'.
"""

from __future__ import annotations

import bisect
import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tradestack.signals.features.orderbook import Books

COLUMNS = ("timestamp", "order_id", "side", "price", "volume", "action")
TRADE_COLUMNS = ("timestamp", "price", "amount", "side")
SIDES = {"bid": "bid", "buy": "bid", "b": "bid", "ask": "ask", "sell": "ask", "a": "ask", "s": "ask"}
ACTIONS = ("created", "changed", "deleted")


@dataclass
class Rebuilt:
    """Snapshots rebuilt from events, and the rows refused."""

    timestamps: list[str] = field(default_factory=list)
    levels: list[list[list[float]]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    events: int = 0

    def books(self) -> Books:
        """The snapshots as level-major arrays."""
        columns = np.array(self.levels, dtype=np.float64)  # (snapshots, 4, depth)
        return Books(*(np.ascontiguousarray(columns[:, i, :].T) for i in range(4)))


def _side_levels(book: dict[float, float], descending: bool, depth: int) -> tuple[list[float], list[float]] | None:
    prices = sorted(book, reverse=descending)[:depth]
    if len(prices) < depth:
        return None
    return prices, [book[p] for p in prices]


def rebuild(rows: Iterable[dict[str, str]], *, depth: int = 10, progress: Callable[[int], None] | None = None) -> Rebuilt:
    """Apply events in file order (line numbers count the header as line 1)."""
    result = Rebuilt()
    orders: dict[str, tuple[str, float, float]] = {}
    sides: dict[str, dict[float, float]] = {"bid": {}, "ask": {}}

    def remove(order: tuple[str, float, float]) -> None:
        side, price, volume = order
        left = sides[side][price] - volume
        if left > 1e-12:
            sides[side][price] = left
        else:
            del sides[side][price]

    for line, row in enumerate(rows, start=2):
        if progress is not None and line % 10_000 == 0:
            progress(10_000)
        try:
            datetime.fromisoformat(row["timestamp"].strip())
            action = row["action"].strip().lower()
            order_id = row["order_id"].strip()
            if action not in ACTIONS:
                raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {row['action']!r}")
            if not order_id:
                raise ValueError("order_id is empty")
            if action == "deleted":
                if order_id not in orders:
                    raise ValueError(f"order {order_id} is deleted before it was created")
                remove(orders.pop(order_id))
            else:
                side = SIDES.get(row["side"].strip().lower())
                if side is None:
                    raise ValueError(f"side must be bid/buy or ask/sell, got {row['side']!r}")
                price, volume = float(row["price"]), float(row["volume"])
                if not (np.isfinite(price) and price > 0 and np.isfinite(volume) and volume > 0):
                    raise ValueError(f"price and volume must be positive numbers, got {row['price']!r} and {row['volume']!r}")
                if action == "created" and order_id in orders:
                    raise ValueError(f"order {order_id} is created twice")
                if action == "changed":
                    if order_id not in orders:
                        raise ValueError(f"order {order_id} is changed before it was created")
                    remove(orders[order_id])
                orders[order_id] = (side, price, volume)
                sides[side][price] = sides[side].get(price, 0.0) + volume
        except (KeyError, TypeError) as exc:
            result.refused.append(f"line {line}: missing column {exc}")
            continue
        except ValueError as exc:
            result.refused.append(f"line {line}: {exc}")
            continue
        result.events += 1
        bids = _side_levels(sides["bid"], True, depth)
        asks = _side_levels(sides["ask"], False, depth)
        if bids is None or asks is None or bids[0][0] >= asks[0][0]:
            continue
        result.timestamps.append(row["timestamp"].strip())
        result.levels.append([bids[0], bids[1], asks[0], asks[1]])
    return result


def read(path: Path, *, depth: int = 10, progress: Callable[[int], None] | None = None) -> Rebuilt:
    """Rebuild snapshots from the CSV file at `path`; ValueError when its header lacks a column."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip().lower() for name in reader.fieldnames or []]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path.name}: the header lacks {', '.join(missing)} (need {', '.join(COLUMNS)})")
        reader.fieldnames = header
        return rebuild(reader, depth=depth, progress=progress)


@dataclass
class Trades:
    """Traded volume per snapshot, by aggressor side, and the trade rows refused."""

    buy: list[float]
    sell: list[float]
    refused: list[str] = field(default_factory=list)
    after_last: int = 0


def trade_volumes(rows: Iterable[dict[str, str]], timestamps: list[str]) -> Trades:
    """Each trade's amount added to the first snapshot at or after its time (line numbers count the header)."""
    times = [datetime.fromisoformat(t) for t in timestamps]
    result = Trades([0.0] * len(times), [0.0] * len(times))
    for line, row in enumerate(rows, start=2):
        try:
            when = datetime.fromisoformat(row["timestamp"].strip())
            side = SIDES.get(row["side"].strip().lower())
            if side is None:
                raise ValueError(f"side must be buy or sell, got {row['side']!r}")
            price, amount = float(row["price"]), float(row["amount"])
            if not (np.isfinite(price) and price > 0 and np.isfinite(amount) and amount > 0):
                raise ValueError(f"price and amount must be positive numbers, got {row['price']!r} and {row['amount']!r}")
            index = bisect.bisect_left(times, when)
        except (KeyError, TypeError) as exc:
            result.refused.append(f"line {line}: missing column or a timestamp without time zone among ones with: {exc}")
            continue
        except ValueError as exc:
            result.refused.append(f"line {line}: {exc}")
            continue
        if index == len(times):
            result.after_last += 1
            continue
        (result.buy if side == "bid" else result.sell)[index] += amount
    return result


def read_trades(path: Path, timestamps: list[str]) -> Trades:
    """`trade_volumes` of the CSV file at `path`; ValueError when its header lacks a column."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip().lower() for name in reader.fieldnames or []]
        missing = [c for c in TRADE_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path.name}: the header lacks {', '.join(missing)} (need {', '.join(TRADE_COLUMNS)})")
        reader.fieldnames = header
        return trade_volumes(reader, timestamps)


def save(rebuilt: Rebuilt, target: Path, trades: Trades | None = None) -> None:
    """Write the snapshots (and the traded volumes, when given) to `target` (.npz)."""
    books = rebuilt.books()
    target.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, npt.NDArray[np.generic]] = {
        "timestamps": np.array(rebuilt.timestamps), "bid_price": books.bid_price, "bid_size": books.bid_size,
        "ask_price": books.ask_price, "ask_size": books.ask_size,
    }  # fmt: skip
    if trades is not None:
        arrays |= {"buy_volume": np.array(trades.buy), "sell_volume": np.array(trades.sell)}
    np.savez_compressed(target, allow_pickle=False, **arrays)


def load_trades(path: Path) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    """(buy, sell) volume per snapshot saved by `save`, or None when no trades file was imported."""
    with np.load(path) as archive:
        if "buy_volume" not in archive:
            return None
        return archive["buy_volume"], archive["sell_volume"]


def load(path: Path) -> Books:
    """Snapshots saved by `save`."""
    with np.load(path) as archive:
        return Books(archive["bid_price"], archive["bid_size"], archive["ask_price"], archive["ask_size"])
