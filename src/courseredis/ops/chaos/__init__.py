"""Chaos scenarios: what survives which fault, and what no input can do, with figures.

`python -m courseredis.ops.chaos` (`make chaos`) runs each scenario against a local stack it
starts itself and writes `reports/chaos/summary.json`. One module per scenario; each has a
`run(workdir, options)` returning a `ScenarioResult`, and options with a `short()` form
that the test suite (`tests/chaos`) runs.
"""
