"""Locust suites: rate limiting, lock contention, cache hit ratio."""
