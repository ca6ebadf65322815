"""Signals: features, the cross-sectional alpha, the order-book predictor and their model registry."""
