"""The alpha's walk-forward: the purge gap keeps test prices out of training, and evaluation scores are right."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from tradestack.signals import alpha


def _panel(days: int = 700, symbols: int = 6, seed: int = 3) -> alpha.Panel:
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (days, symbols)), axis=0))
    dates = tuple(date(2010, 1, 1) + timedelta(days=i) for i in range(days))
    return alpha.Panel(dates, tuple(f"S{i}" for i in range(symbols)), close)


def test_folds_leave_the_label_horizon_and_embargo_between_training_and_test() -> None:
    folds = alpha.walk_forward(1000, horizon=5, test_days=100, min_train_days=300, embargo=2)
    assert len(folds) >= 6
    for fold in folds:
        last_label_day = fold.train_end - 1 + 5  # the close the last training label reads
        assert last_label_day < fold.test_start
        assert fold.test_start - fold.train_end == 5 + 2
    with pytest.raises(ValueError, match="purge"):
        alpha.walk_forward(1000, horizon=5, purge=4)


def test_a_fold_model_does_not_change_when_test_period_prices_change() -> None:
    """Training for a fold reads no price from its test period: perturbing them leaves the model identical.

    Remove the purge gap from `walk_forward` and the last training labels read test-period closes,
    so the model changes and this test fails.
    """
    panel = _panel()
    fold = alpha.walk_forward(len(panel.dates), horizon=5, test_days=100, min_train_days=400, embargo=0)[0]
    perturbed_close = panel.close.copy()
    perturbed_close[fold.test_start :] *= np.random.default_rng(1).uniform(0.7, 1.3, perturbed_close[fold.test_start :].shape)
    perturbed = alpha.Panel(panel.dates, panel.symbols, perturbed_close)
    rows = slice(fold.train_start, fold.train_end)
    probe = np.random.default_rng(2).normal(0, 1, (50, 1, len(alpha.dataset(panel, 5).names)))
    one = alpha.predict(alpha.fit(alpha.dataset(panel, 5), rows, rounds=30), probe)
    two = alpha.predict(alpha.fit(alpha.dataset(perturbed, 5), rows, rounds=30), probe)
    np.testing.assert_array_equal(one, two)
    # The check can fail: one more training day (no gap) would read a perturbed close.
    leaky = slice(fold.train_start, fold.test_start)
    three = alpha.predict(alpha.fit(alpha.dataset(panel, 5), leaky, rounds=30), probe)
    four = alpha.predict(alpha.fit(alpha.dataset(perturbed, 5), leaky, rounds=30), probe)
    assert not np.array_equal(three, four)


def test_rank_label_is_centred_percentile_rank_with_ties() -> None:
    label = alpha.rank_label(np.array([[0.1, -0.2, 0.1, np.nan, 0.3]]))
    np.testing.assert_array_equal(label, np.array([[0.0, -0.5, 0.0, np.nan, 0.5]]))


def test_scores_equal_an_independent_computation() -> None:
    rng = np.random.default_rng(5)
    signal = rng.normal(0, 1, (30, 8))
    forward = 0.3 * signal + rng.normal(0, 1, (30, 8))
    next_day = rng.normal(0, 0.01, (30, 8))
    scores = alpha.score_signal(signal, forward, next_day, quantile=0.25)
    for t in range(30):
        assert scores.ic[t] == pytest.approx(np.corrcoef(signal[t], forward[t])[0, 1], rel=1e-12)
        ranks_s = signal[t].argsort().argsort()
        ranks_f = forward[t].argsort().argsort()
        assert scores.rank_ic[t] == pytest.approx(np.corrcoef(ranks_s, ranks_f)[0, 1], rel=1e-12)
        order = signal[t].argsort()
        expected = next_day[t, order[-2:]].mean() - next_day[t, order[:2]].mean()
        assert scores.long_short[t] == pytest.approx(expected, rel=1e-12)
    hits = np.sign(signal - np.median(signal, axis=1, keepdims=True)) == np.sign(
        forward - np.median(forward, axis=1, keepdims=True)
    )
    assert scores.hits / scores.calls == pytest.approx(hits.mean())
    assert scores.turnover[0] == pytest.approx(1.0)  # from nothing to fully invested long and short
    assert scores.summary()["icir"] == pytest.approx(np.mean(scores.ic) / np.std(scores.ic, ddof=1))


def test_walk_forward_evaluation_reports_model_and_both_baselines_per_fold() -> None:
    panel = _panel(days=800, symbols=6)
    seen: list[tuple[int, int]] = []
    evaluation = alpha.evaluate(panel, test_days=150, min_train_days=400, rounds=20, progress=lambda i, n: seen.append((i, n)))
    assert len(evaluation.folds) == len(seen) >= 2
    for fold in evaluation.folds:
        for scores in (fold.model, fold.momentum, fold.shuffled):
            assert {"ic", "rank_ic", "icir", "rank_icir", "hit_rate", "long_short_daily", "turnover"} <= set(scores)
            assert scores["days"] > 0
    assert evaluation.folds[0].model["days"] == evaluation.folds[0].momentum["days"] == 150
    # Random walks: nobody has skill; the model's IC is small (and computed, not constant across folds).
    assert abs(evaluation.overall["model"]["ic"]) < 0.1
    assert len({round(f.model["ic"], 12) for f in evaluation.folds}) == len(evaluation.folds)
    assert len(evaluation.test_dates) == len(evaluation.daily_long_short["model"])
    assert evaluation.to_json()["overall"]["momentum"]["days"] > 0
