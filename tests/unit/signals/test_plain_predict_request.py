"""`plain_predict_request`: the hand check of /predict's hot path accepts only what `PredictRequest` accepts, as it holds it."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from pydantic import ValidationError

from tradestack.signals.schemas import PlainPredictRequest, PredictRequest, plain_predict_request


def _book(levels: int = 10) -> dict[str, Any]:
    return {
        "bids": [[f"{100 - 0.01 * (i + 1):.2f}", i + 1] for i in range(levels)],
        "asks": [[100 + 0.01 * (i + 1), str(i + 2)] for i in range(levels)],
    }


VALID: list[Any] = [
    {"symbol": "BTC-USD"},
    {"symbol": "B" * 32, "book": _book()},
    {"symbol": "x", "book": _book(1), "previous": _book(1)},
    {"symbol": "ETH-USD", "book": _book(50), "previous": None},
    {"symbol": "ETH-USD", "book": None},
    {"symbol": "ETH-USD", "book": {"bids": [["nan", "-1"]], "asks": [[1e300, 0]]}},  # refused later, by the book checks
]
INVALID: list[Any] = [
    [],
    "BTC-USD",
    None,
    {},
    {"symbol": ""},
    {"symbol": "B" * 33},
    {"symbol": 7},
    {"symbol": None},
    {"symbol": "BTC-USD", "extra": 1},
    {"symbol": "BTC-USD", "book": []},
    {"symbol": "BTC-USD", "book": {"bids": [["1", "1"]]}},
    {"symbol": "BTC-USD", "book": {**_book(), "mid": "1"}},
    {"symbol": "BTC-USD", "book": _book(51)},
    {"symbol": "BTC-USD", "book": {"bids": [], "asks": [["1", "1"]]}},
    {"symbol": "BTC-USD", "book": {"bids": [["1", "1", "1"]], "asks": [["2", "1"]]}},
    {"symbol": "BTC-USD", "book": {"bids": [["1"]], "asks": [["2", "1"]]}},
    {"symbol": "BTC-USD", "book": {"bids": [{"price": 1, "size": 1}], "asks": [["2", "1"]]}},
    {"symbol": "BTC-USD", "book": {"bids": [[None, "1"]], "asks": [["2", "1"]]}},
    {"symbol": "BTC-USD", "book": {"bids": [["1", ["1"]]], "asks": [["2", "1"]]}},
    {"symbol": "BTC-USD", "book": {"bids": "1,1", "asks": [["2", "1"]]}},
    {"symbol": "BTC-USD", "book": _book(), "previous": {"bids": [], "asks": []}},
]


def _held(request: PredictRequest | PlainPredictRequest) -> Any:
    """What the service reads of a request: the symbol and every level's values, as floats where they are numbers."""

    def side(levels: Any) -> list[list[Any]]:
        return [[float(v) if not isinstance(v, str) else v for v in level] for level in levels]

    books = [(side(b.bids), side(b.asks)) if b is not None else None for b in (request.book, request.previous)]
    return request.symbol, books


@pytest.mark.parametrize("document", VALID)
def test_a_valid_request_is_held_as_the_model_holds_it(document: Any) -> None:
    plain = plain_predict_request(document)
    assert plain is not None
    assert _held(plain) == _held(PredictRequest.model_validate(document))


@pytest.mark.parametrize("document", INVALID)
def test_a_request_the_model_refuses_is_left_to_it(document: Any) -> None:
    with pytest.raises(ValidationError):
        PredictRequest.model_validate(document)
    assert plain_predict_request(document) is None


def test_random_mutations_never_let_through_what_the_model_refuses() -> None:
    rng = random.Random(16)
    odd: list[Any] = [None, True, "", "x" * 40, 1, 1.5, [], {}, ["1"], ["1", "2", "3"], [True, 1], {"bids": []}]
    for _ in range(3_000):
        document: Any = copy.deepcopy(rng.choice(VALID[1:4]))
        # Replace one value anywhere in the document with an odd one, or add/remove a key.
        target: Any = document
        path: list[Any] = []
        while isinstance(target, (dict, list)) and target and rng.random() < 0.7:
            key = rng.choice(list(target)) if isinstance(target, dict) else rng.randrange(len(target))
            path.append((target, key))
            target = target[key]
        if path:
            parent, key = path[-1]
            parent[key] = rng.choice(odd)
        else:
            document[rng.choice(["extra", "symbol", "book"])] = rng.choice(odd)
        try:
            expected = _held(PredictRequest.model_validate(document))
        except ValidationError:
            assert plain_predict_request(document) is None, document
            continue
        plain = plain_predict_request(document)
        assert plain is None or _held(plain) == expected, document
