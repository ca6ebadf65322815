"""Market data: instruments, stored bars, feeds, quotes/candles API and WebSocket streaming."""
