"""Audit log: an append-only, hash-chained record of security and trading actions.

`AuditService.stage` writes an entry to the outbox in the caller's transaction (`record` in a
transaction of its own, so a refused request is still recorded); the leased `AuditChainer` moves
outbox rows into the chain in batches, off the request path. `AuditService.verify` walks the
chain and names the first row that was edited, deleted or moved, and `AuditService.list` reads
entries newest first for the API.
"""
