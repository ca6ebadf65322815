"""Prometheus metrics of the signals module."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TRADING_SIGNALS = Counter("trading_signals", "Alpha signals served (one per symbol in an answer), by model version.", ["model"])
PREDICTIONS = Counter("predictions", "Order-book predictions answered (cached ones included), by model version.", ["model"])
PREDICTION_LATENCY = Histogram(
    "prediction_latency_seconds",
    "Time to answer one /predict in the service: book, features, model (cache hits included).",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)
ML_MODEL_ACCURACY = Gauge(
    "ml_model_accuracy",
    "Realised directional accuracy of the live predictions and alpha days whose horizon has passed, by model version.",
    ["model"],
    multiprocess_mode="livemax",
)
