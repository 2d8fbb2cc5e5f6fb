"""`python -m smoke [pytest arguments]`: the smoke suite as `make smoke` runs it.

Replaces itself with `python -m pytest smoke` and the flags that keep the other suites'
pytest plugins out (`courseredis.demo.SMOKE_PYTEST_FLAGS`, which `make demo` uses too).
Run it from the repository's root.
"""

from __future__ import annotations

import os
import sys

from courseredis.demo import SMOKE_PYTEST_FLAGS

if __name__ == "__main__":
    command = [sys.executable, "-m", "pytest", "smoke", *SMOKE_PYTEST_FLAGS, *sys.argv[1:]]
    os.execv(sys.executable, command)
