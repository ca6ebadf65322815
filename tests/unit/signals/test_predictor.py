"""The order-book predictor: labels, walk-forward without leakage, both models scored, OFI R² as the literature computes it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tradestack.signals import predictor
from tradestack.signals.features import orderbook


@pytest.fixture(scope="module")
def books() -> orderbook.Books:
    return predictor.simulate(6_000, seed=3)


def test_labels_are_the_sign_of_the_mid_move_and_flat_moves_are_left_out(books: orderbook.Books) -> None:
    y = predictor.labels(books, 5)
    mid = (books.bid_price[0] + books.ask_price[0]) / 2
    for t in range(0, len(books) - 5, 97):
        move = mid[t + 5] - mid[t]
        expected = 1.0 if move > 0 else 0.0 if move < 0 else math.nan
        assert y[t] == expected or (math.isnan(expected) and math.isnan(y[t]))
    assert np.isnan(y[-5:]).all()


def test_walk_forward_scores_both_models_against_the_majority_baseline(books: orderbook.Books) -> None:
    evaluation, model = predictor.evaluate(books, horizon=10, folds=3)
    assert len(evaluation.folds) == 3
    for fold in evaluation.folds:
        assert set(fold) == {"logistic", "lightgbm"}
        for figures in fold.values():
            assert 0.5 <= figures["majority_baseline"] <= 1.0
            assert 0.0 <= figures["balanced_accuracy"] <= 1.0
    chosen = evaluation.overall[evaluation.chosen]["balanced_accuracy"]
    assert chosen == max(f["balanced_accuracy"] for f in evaluation.overall.values())
    # The book's imbalance carries information about the next moves in this simulator: better than a coin.
    assert chosen > 0.52
    assert 0.0 < evaluation.ofi_r2 < 1.0
    stored = predictor.model_from_text(model.to_text())
    x = predictor.features(books)[:100]
    np.testing.assert_allclose(stored.probability_up(x), model.probability_up(x), rtol=1e-12)


def test_ofi_r_squared_equals_an_independent_regression(books: orderbook.Books) -> None:
    events = orderbook.ofi_events(books)
    mid = (books.bid_price[0] + books.ask_price[0]) / 2
    xs, ys = [], []
    for end in range(20, len(books), 20):
        xs.append(sum(events[end - 19 : end + 1]))
        ys.append(mid[end] - mid[end - 20])
    slope, intercept = np.polyfit(xs, ys, 1)
    residual = np.array(ys) - (slope * np.array(xs) + intercept)
    r2 = 1 - (residual**2).sum() / ((np.array(ys) - np.mean(ys)) ** 2).sum()
    assert predictor.ofi_r_squared(books, 20) == pytest.approx(r2, rel=1e-9)


def test_logistic_model_matches_scikit_learn(books: orderbook.Books) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = predictor.features(books), predictor.labels(books, 10)
    known = ~np.isnan(y)
    model = predictor.fit_logistic(x[known], y[known])
    mean, scale = x[known].mean(axis=0), x[known].std(axis=0)
    reference = LogisticRegression(C=1.0, max_iter=500).fit((x[known] - mean) / scale, y[known])
    np.testing.assert_allclose(
        model.probability_up(x[:200]), reference.predict_proba((x[:200] - mean) / scale)[:, 1], rtol=1e-9, atol=1e-12
    )


def test_one_snapshot_in_plain_python_equals_the_vectorised_features_exactly(books: orderbook.Books) -> None:
    x = predictor.features(books)
    for t in range(0, 3000, 7):
        current = [a[:, t].tolist() for a in (books.bid_price, books.bid_size, books.ask_price, books.ask_size)]
        previous = [a[:, t - 1].tolist() for a in (books.bid_price, books.bid_size, books.ask_price, books.ask_size)]
        assert predictor.features_of_snapshot(current, previous if t else None) == x[t].tolist()


@pytest.mark.parametrize("kind", ["lightgbm", "logistic"])
def test_one_row_gives_the_value_of_the_matrix_prediction_exactly(books: orderbook.Books, kind: str) -> None:
    x = predictor.features(books)
    y = predictor.labels(books, 10)
    keep = ~np.isnan(y) & np.isfinite(x).all(axis=1)
    fitted = predictor.fit_booster(x[keep], y[keep]) if kind == "lightgbm" else predictor.fit_logistic(x[keep], y[keep])
    model = predictor.model_from_text(fitted.to_text())  # as /predict loads it from the registry
    probe = x[keep][:300]
    one = np.array([model.probability_up_one([float(v) for v in row]) for row in probe])
    # What the API computed before: the model on a one-row matrix.
    assert np.array_equal(one, np.array([model.probability_up(row[None, :])[0] for row in probe]))
    if kind == "lightgbm":  # trees see each row alone: the batch gives the same values too
        assert np.array_equal(one, model.probability_up(probe))
