"""Request and response bodies of the signals API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ModelOut(BaseModel):
    """A registered model version with its headline evaluation."""

    version: str
    kind: str
    created_at: datetime
    promoted: bool
    promoted_at: datetime | None
    data_fingerprint: str
    horizon: int | None = None
    universe: list[str] = Field(default_factory=list)
    training_window: list[str] = Field(default_factory=list, description="First and last training day (ISO dates).")
    metrics: dict[str, dict[str, float | None]] = Field(
        default_factory=dict, description="Out-of-sample walk-forward figures: model, momentum, shuffled."
    )


class ModelList(BaseModel):
    """Every registered model, newest first."""

    models: list[ModelOut]


class SignalRequest(BaseModel):
    """Ask for one symbol's signal."""

    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(min_length=1, max_length=32, examples=["AAPL"])
    model: Literal["lightgbm"] = Field(default="lightgbm", description="The model family; only lightgbm exists.")
    max_age_days: int | None = Field(
        default=None, ge=0, le=36_500, description="Refuse (409) when the latest bar is older than this many days."
    )


class SignalOut(BaseModel):
    """One symbol's score on the as-of day, and where it ranks in the universe."""

    symbol: str
    score: float
    rank: int = Field(description="1 = highest expected forward return.")
    universe_size: int
    percentile: float = Field(description="0 = lowest score, 1 = highest.")
    direction: Literal["long", "short", "flat"]
    model_version: str
    as_of: date = Field(description="Day of the last bar the features used.")
    horizon_days: int


class SignalList(BaseModel):
    """The whole universe ranked."""

    model_version: str
    as_of: date
    horizon_days: int
    signals: list[SignalOut]


class ModelAccuracy(BaseModel):
    """How a model version's live calls turned out (stored outcomes of every process; what `ml_model_accuracy` reports)."""

    model_version: str
    kind: Literal["alpha", "orderbook"]
    hits: int = Field(description="Calls that came true.")
    calls: int = Field(description="Calls judged (their horizon has passed and the outcome moved).")
    accuracy: float | None = Field(description="hits / calls; null until the first call is judged.")
    pending: int = Field(description="Calls (alpha: as-of days; order book: predictions) still waiting for their horizon.")


class AccuracyList(BaseModel):
    """Live accuracy of every model version served (stored outcomes, shared by every process)."""

    scope: Literal["installation"] = Field(
        default="installation", description="Counted from the outcomes stored in the database: every worker answers the same."
    )
    models: list[ModelAccuracy]


def metadata_metrics(metadata: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """The overall evaluation figures in a model's metadata (empty when it was not evaluated)."""
    evaluation = metadata.get("evaluation") or {}
    overall: dict[str, dict[str, float | None]] = evaluation.get("overall") or {}
    return overall


Level = tuple[float | str, float | str]


class BookIn(BaseModel):
    """An L2 snapshot: [price, size] pairs, best first, as many levels per side as the model was trained on."""

    model_config = ConfigDict(extra="forbid")

    bids: list[Level] = Field(min_length=1, max_length=50)
    asks: list[Level] = Field(min_length=1, max_length=50)


class PredictRequest(BaseModel):
    """Predict from the live book of `symbol`, or from a provided snapshot (and optionally the one before it)."""

    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(min_length=1, max_length=32, examples=["BTC-USD"])
    book: BookIn | None = None
    previous: BookIn | None = Field(default=None, description="The snapshot before `book`, for order-flow imbalance.")


class PredictionOut(BaseModel):
    """The probability that the mid is higher after `horizon_snapshots` book updates."""

    symbol: str
    probability_up: float
    probability_down: float
    direction: Literal["up", "down"]
    features: dict[str, float]
    model_version: str
    model_type: str
    horizon_snapshots: int
    book_ts: str | None = Field(description="Timestamp of the live book used; null for a provided snapshot.")
    cached: bool
    latency_ms: float
