"""Release engineering: smoke and load gates, and the deploy engine (blue-green and canary with automatic rollback)."""
