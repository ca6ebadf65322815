"""Stdlib-only building blocks: errors, clock, money."""
