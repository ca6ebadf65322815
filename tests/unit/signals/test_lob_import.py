"""Order-by-order events rebuilt into L2 snapshots: equal to an independent book, bad rows named by line."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from tradestack.signals import lob_import


def _events(count: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    live: dict[str, tuple[str, int, int]] = {}
    rows = []
    for i in range(count):
        action = "created" if len(live) < 30 or rng.random() < 0.5 else rng.choice(["changed", "deleted"])
        if action == "created":
            order_id = f"o{i}"
            side = rng.choice(["bid", "ask"])
            price = 10_000 - rng.randint(1, 25) if side == "bid" else 10_000 + rng.randint(1, 25)
            live[order_id] = (side, price, rng.randint(1, 9))
        else:
            order_id = rng.choice(sorted(live))
            side, price, _ = live[order_id]
            if action == "deleted":
                del live[order_id]
            else:
                live[order_id] = (side, price, rng.randint(1, 9))
        side, price, volume = live.get(order_id, (side, price, 1))
        rows.append({"timestamp": f"2026-01-01T00:00:{i % 60:02d}", "order_id": order_id, "side": side,
                     "price": f"{price / 100:.2f}", "volume": str(volume), "action": action})  # fmt: skip
    return rows


def _independent_top(rows: list[dict[str, str]], depth: int) -> list[list[list[float]]]:
    orders: dict[str, tuple[str, float, float]] = {}
    snapshots = []
    for row in rows:
        if row["action"] == "deleted":
            orders.pop(row["order_id"])
        else:
            orders[row["order_id"]] = (row["side"], float(row["price"]), float(row["volume"]))
        levels: dict[str, dict[float, float]] = {"bid": {}, "ask": {}}
        for side, price, volume in orders.values():
            levels[side][price] = levels[side].get(price, 0.0) + volume
        bids = sorted(levels["bid"], reverse=True)[:depth]
        asks = sorted(levels["ask"])[:depth]
        if len(bids) == depth and len(asks) == depth and bids[0] < asks[0]:
            snapshots.append([bids, [levels["bid"][p] for p in bids], asks, [levels["ask"][p] for p in asks]])
    return snapshots


def test_snapshots_equal_an_independent_rebuild() -> None:
    rows = _events(2_000, seed=4)
    rebuilt = lob_import.rebuild(rows, depth=5)
    assert rebuilt.refused == []
    expected = _independent_top(rows, 5)
    assert len(expected) > 1_000
    np.testing.assert_allclose(np.array(rebuilt.levels), np.array(expected), rtol=1e-12)
    books = rebuilt.books()
    assert len(books) == len(expected)
    assert books.levels == 5


def test_bad_rows_are_refused_with_their_line_and_reason() -> None:
    good = {"timestamp": "2026-01-01T00:00:00", "order_id": "a", "side": "bid", "price": "10", "volume": "1", "action": "created"}
    rows = [
        good,
        {**good, "order_id": "a"},
        {**good, "order_id": "b", "action": "deleted"},
        {**good, "order_id": "c", "side": "middle"},
        {**good, "order_id": "d", "price": "-1"},
        {**good, "order_id": "e", "timestamp": "yesterday"},
        {**good, "order_id": "f", "action": "moved"},
        {**good, "order_id": "g", "action": "changed"},
    ]
    refused = lob_import.rebuild(rows).refused
    assert [r.split(":")[0] for r in refused] == [f"line {n}" for n in range(3, 10)]
    assert "created twice" in refused[0]
    assert "deleted before it was created" in refused[1]
    assert "side must be" in refused[2]
    assert "positive" in refused[3]
    assert "isoformat" in refused[4] or "Invalid" in refused[4]
    assert "action must be" in refused[5]
    assert "changed before it was created" in refused[6]


def test_a_file_without_the_needed_columns_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("time,id\n1,2\n")
    with pytest.raises(ValueError, match="the header lacks timestamp, order_id, side, price, volume, action"):
        lob_import.read(bad)


def test_trades_are_added_to_the_first_snapshot_at_or_after_them_and_bad_rows_named(tmp_path: Path) -> None:
    stamps = ["2026-01-01T00:00:01", "2026-01-01T00:00:03", "2026-01-01T00:00:03", "2026-01-01T00:00:07"]
    trades = tmp_path / "trades.csv"
    trades.write_text(
        "Timestamp,price,amount,side\n"
        "2026-01-01T00:00:00.5,100.01,2,buy\n"  # before the first snapshot: counted in it
        "2026-01-01T00:00:01,100.01,1.5,sell\n"  # at the first snapshot's time: in it
        "2026-01-01T00:00:02,100.02,3,b\n"  # -> the first snapshot at 00:03
        "2026-01-01T00:00:06,100.00,4,sell\n"  # -> 00:07
        "2026-01-01T00:00:09,100.00,5,buy\n"  # after the last snapshot: left out
        "2026-01-01T00:00:04,100.00,1,hold\n"
        "2026-01-01T00:00:04,100.00,-1,buy\n"
        "yesterday,100.00,1,buy\n"
    )
    traded = lob_import.read_trades(trades, stamps)
    assert traded.buy == [2.0, 3.0, 0.0, 0.0]
    assert traded.sell == [1.5, 0.0, 0.0, 4.0]
    assert traded.after_last == 1
    assert [r.split(":")[0] for r in traded.refused] == ["line 7", "line 8", "line 9"]
    assert "buy or sell" in traded.refused[0]
    assert "positive" in traded.refused[1]
    (tmp_path / "bad.csv").write_text("timestamp,price,side\n")
    with pytest.raises(ValueError, match="lacks amount"):
        lob_import.read_trades(tmp_path / "bad.csv", stamps)

    rebuilt = lob_import.Rebuilt(timestamps=stamps, levels=[[[99.0], [1.0], [101.0], [1.0]]] * 4)
    lob_import.save(rebuilt, tmp_path / "with.npz", traded)
    lob_import.save(rebuilt, tmp_path / "without.npz")
    saved = lob_import.load_trades(tmp_path / "with.npz")
    assert saved is not None
    np.testing.assert_array_equal(saved[0], traded.buy)
    np.testing.assert_array_equal(saved[1], traded.sell)
    assert lob_import.load_trades(tmp_path / "without.npz") is None
