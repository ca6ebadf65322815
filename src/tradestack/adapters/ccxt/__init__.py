"""Crypto venues through ccxt's public (unauthenticated) REST market data."""

from tradestack.adapters.ccxt.feed import CcxtFeed, make_exchange

__all__ = ["CcxtFeed", "make_exchange"]
