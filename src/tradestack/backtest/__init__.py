"""The event-driven backtester: bars replayed through the pure domain on a simulated clock.

Strategy (`tradestack.strategy`) → order state machine (`domain.orders`) → risk checks
(`domain.riskstate`, `domain.risk`) → paper matching (`domain.matching`) → journal and books
(`domain.ledger`, `domain.books`). No database, no web, no asyncio: one plain loop.
"""
