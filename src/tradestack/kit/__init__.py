"""Infrastructure shared by every module: configuration, database, cache, bus, logging, metrics."""
