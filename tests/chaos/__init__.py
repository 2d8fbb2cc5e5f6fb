"""The chaos scenarios' short forms (`courseredis.ops.chaos`; `make chaos` runs the full ones).

Scenario 3 (full cluster restart on new addresses) has no test here: its test is
`tests/test_cluster_restart.py`, on the same code path (`restart_stack`).
"""
