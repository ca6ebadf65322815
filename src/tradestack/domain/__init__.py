"""Pure trading logic: no framework, no I/O. Imports only the standard library and `tradestack.core`."""
