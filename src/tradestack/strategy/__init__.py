"""Strategies: the API a user writes a strategy against, and the built-in examples.

`strategy.api` and `strategy.examples` are pure (no framework, no I/O): the same strategy object
runs in the backtester (`tradestack.backtest`) and, later, in the paper and live runners.
"""
