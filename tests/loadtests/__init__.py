"""The load suites: their checks on synthetic traces, and each suite run against a stack."""
