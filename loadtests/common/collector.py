"""The collector: the suites' own records, brought from every worker to the master."""

from __future__ import annotations

from typing import Any

# The key the records travel under in Locust's worker reports.
COLLECTOR_KEY = "courseredis"


class Collector:
    """Records the suites keep besides Locust's stats (lists of plain values per kind).

    On a worker, what was recorded since the last report travels with Locust's own stats
    report to the master (`report_to_master`), which merges it (`worker_report`); in a
    single process the records simply stay here.
    """

    def __init__(self) -> None:
        self.records: dict[str, list[Any]] = {}
        self.counters: dict[str, float] = {}

    def add(self, kind: str, record: Any) -> None:
        self.records.setdefault(kind, []).append(record)

    def count(self, name: str, amount: float = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + amount

    def get(self, kind: str) -> list[Any]:
        return self.records.get(kind, [])

    def drain(self) -> dict[str, Any]:
        data = {"records": self.records, "counters": self.counters}
        self.records, self.counters = {}, {}
        return data

    def merge(self, data: dict[str, Any] | None) -> None:
        if not data:
            return
        for kind, records in data.get("records", {}).items():
            self.records.setdefault(kind, []).extend(records)
        for name, amount in data.get("counters", {}).items():
            self.count(name, amount)
