"""Order entry, pre-trade risk control and the paper matching engine."""
