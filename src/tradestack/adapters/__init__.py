"""Venue adapters (market data and execution), each behind one interface from `tradestack.domain`."""
