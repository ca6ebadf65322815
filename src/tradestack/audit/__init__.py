"""Audit log: an append-only, hash-chained record of security and trading actions.

`AuditService.record` appends an entry in its own transaction (so a refused request is still
recorded), `AuditService.verify` walks the chain and names the first row that was edited,
deleted or moved, and `AuditService.list` reads entries newest first for the API.
"""
