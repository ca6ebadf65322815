"""Trading accounts' books: the double-entry journal, cash balances and (later) positions and valuation."""
