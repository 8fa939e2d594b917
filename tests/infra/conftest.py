"""The infrastructure tests run in `.venv-infra` (`make check-infra`), where checkov installs pycep.

The app's `.venv` has no pycep, so its plain `pytest` run leaves this directory out entirely
rather than reporting a wall of skips; `make test` still runs it through `check-infra`.
"""

from __future__ import annotations

import importlib.util

collect_ignore_glob: list[str] = []
if importlib.util.find_spec("pycep") is None:
    collect_ignore_glob = ["test_*.py"]
