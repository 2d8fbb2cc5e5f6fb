"""Prometheus metrics: the pattern counters and the HTTP figures, one registry per app.

A registry per app (not the global one) lets several services live in one process, as
they do in the tests.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "http_requests_total", "HTTP requests", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "http_request_seconds", "HTTP request latency", ["route"], registry=r
        )
        self.cache = Counter(
            "cache_requests_total", "Course cache lookups by result", ["result"], registry=r
        )
        self.cache_loads = Counter("cache_loads_total", "Course cache loads", registry=r)
        self.ratelimit = Counter(
            "ratelimit_decisions_total",
            "Rate-limit decisions",
            ["route", "scope", "result"],
            registry=r,
        )
        self.lock = Counter(
            "lock_acquisitions_total", "Enrollment lock attempts by result", ["result"], registry=r
        )
        self.lock_wait = Histogram(
            "lock_wait_seconds", "Time spent acquiring the enrollment lock", registry=r
        )
        self.refresh_reuse = Counter(
            "refresh_reuse_detected_total", "Reused refresh tokens (family revoked)", registry=r
        )
        self.events_processed = Counter(
            "events_processed_total", "Events handled", ["consumer", "type"], registry=r
        )
        self.events_duplicates = Counter(
            "events_duplicates_skipped_total",
            "Redelivered events skipped by the idempotency check",
            ["consumer"],
            registry=r,
        )
        self.redis_errors = Counter(
            "redis_errors_total", "Redis calls that failed", ["pattern"], registry=r
        )
        self.service = service

    def render(self) -> bytes:
        return generate_latest(self.registry)
