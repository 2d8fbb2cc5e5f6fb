"""Prometheus metrics: the pattern counters and the HTTP figures, one registry per app.

A registry per app (not the global one) lets several services live in one process, as
they do in the tests.

They are served on a port of their own (`METRICS_PORT`), not on the service's: the
gateway's port is public, and what it counts (routes, limiter decisions, errors) is for
Prometheus, which the NetworkPolicy lets reach the metrics port alone.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import start_http_server


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
        self.password_checks_busy = Counter(
            "password_checks_busy_total",
            "Logins refused (503) because every password-check slot and the queue were full",
            registry=r,
        )
        self.redis_errors = Counter(
            "redis_errors_total", "Redis calls that failed", ["pattern"], registry=r
        )
        self.service = service

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> WSGIServer:
        """Serve `/metrics` on `host:port` (port 0: any free port, `server.server_port`)
        from a daemon thread; `shutdown()` and `server_close()` stop it."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return server
