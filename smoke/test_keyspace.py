"""The keyspace audit (`python -m courseredis.ops.audit`), over every master, after the
flows: every key in the schema, with a TTL within its rule, of the right type."""

from __future__ import annotations

from courseredis.ops.audit import (
    NO_TTL_VIOLATION,
    OUTSIDE_SCHEMA,
    STREAM_TOO_LONG,
    TTL_ABOVE_RULE,
    WRONG_TYPE,
    AuditReport,
)

_SHOWN = 20


def _named(report: AuditReport, kind: str, what: str) -> None:
    found = [v for v in report.violations if v.kind == kind]
    total = report.violation_count.get(kind, 0)
    more = f" (and {total - _SHOWN} more)" if total > _SHOWN else ""
    assert not total, f"{total} {what}: " + "; ".join(v.message() for v in found[:_SHOWN]) + more


def test_audit_covered_every_master(audit: AuditReport) -> None:
    assert audit.masters, "the audit found no master to scan"


def test_no_key_outside_the_schema(audit: AuditReport) -> None:
    _named(audit, OUTSIDE_SCHEMA, "key(s) outside the key schema")


def test_no_key_without_a_ttl(audit: AuditReport) -> None:
    """Event streams excepted (bounded by length instead), in the schema or not."""
    total = audit.without_ttl_count
    more = f" (and {total - _SHOWN} more)" if total > _SHOWN else ""
    details = {v.key: v.message() for v in audit.violations if v.kind == NO_TTL_VIOLATION}
    named = [details.get(key, f"{key} (outside the schema)") for key in audit.without_ttl]
    assert not total, f"{total} key(s) without a TTL: " + "; ".join(named[:_SHOWN]) + more


def test_no_ttl_above_its_rule(audit: AuditReport) -> None:
    _named(audit, TTL_ABOVE_RULE, "key(s) with a TTL above their rule")


def test_every_key_has_its_patterns_type(audit: AuditReport) -> None:
    _named(audit, WRONG_TYPE, "key(s) of the wrong Redis type")


def test_event_streams_stay_bounded(audit: AuditReport) -> None:
    _named(audit, STREAM_TOO_LONG, "event stream(s) past their length bound")
