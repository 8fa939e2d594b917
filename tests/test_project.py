"""The project's promises about itself: documented settings, pinned dependencies, what is deployed."""

from __future__ import annotations

import json
import re
from pathlib import Path

from shared.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent


def test_readme_documents_every_setting_and_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    table = {match for match in re.findall(r"^\| `([A-Z_]+)` \|", readme, re.MULTILINE)}
    assert {setting.name for setting in SETTINGS} <= table
    assert "make demo" in readme
    assert "make test" in readme


def test_local_settings_example_has_every_setting() -> None:
    example = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    assert {setting.name for setting in SETTINGS} <= set(example)


def test_requirements_are_pinned() -> None:
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r"):
                assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][A-Za-z0-9.]*", line), f"{name}: {line}"


def test_host_json_uses_extension_bundle_4() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"


def test_emulator_tests_and_infra_are_not_deployed() -> None:
    ignored = {line.strip() for line in (ROOT / ".funcignore").read_text().splitlines()}
    assert {"emulator/", "tests/", "infra/", ".venv/"} <= ignored


def test_product_pure_core_imports_nothing_from_azure() -> None:
    for module in ("settings", "events", "chain", "desired", "plan", "workers"):
        source = (ROOT / "shared" / f"{module}.py").read_text()
        assert not re.search(r"^\s*(from|import) azure", source, re.MULTILINE), module
