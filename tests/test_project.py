"""The project's promises about itself: documented settings, pinned dependencies, what is deployed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import SETTINGS, Setting, load_settings

ROOT = Path(__file__).resolve().parent.parent


README_SETTING_ROW = re.compile(r"^\| `([A-Z_]+)` \| ([^|]+?) \|", re.MULTILINE)  # | `NAME` | default | ...


def readme_default(setting: Setting) -> set[str]:
    """How the README's table may show `setting`'s default."""
    if setting.default is None:
        return {"(required)"}
    if not setting.default:
        return {"(empty)", "(cloud's)"}  # ARM_ENDPOINT left empty is the cloud's endpoint
    return {f"`{setting.default}`"}


def test_the_readme_s_settings_table_is_the_declared_settings_in_order_with_their_defaults() -> None:
    rows = README_SETTING_ROW.findall((ROOT / "README.md").read_text())
    assert [name for name, _ in rows] == [setting.name for setting in SETTINGS]
    for (name, shown), setting in zip(rows, SETTINGS, strict=True):
        assert shown in readme_default(setting), f"{name}: the README says {shown}, the table {setting.default!r}"


def test_readme_names_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme
    assert "make test" in readme


README_MAX_LINES = 250  # the front door: what, for whom, two commands, a deploy, the settings; depth in docs/
DOCUMENTS = ("README.md", "docs/*.md", "bench/README.md", "emulator/README.md")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def documents() -> list[Path]:
    return sorted(path for pattern in DOCUMENTS for path in ROOT.glob(pattern))


def anchors(path: Path) -> set[str]:
    """The ids GitHub gives the headings of `path`: lower case, punctuation dropped, spaces to hyphens."""
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", FENCE.sub("", path.read_text()), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in LINK.findall(FENCE.sub("", path.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # a web address: not checked offline
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no such heading")
    return broken


def test_the_readme_is_the_front_door_and_links_the_docs_index() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    assert "](docs/README.md)" in readme


def test_the_docs_index_lists_every_page() -> None:
    index = (ROOT / "docs" / "README.md").read_text()
    pages = {path.name for path in (ROOT / "docs").iterdir() if path.suffix in {".md", ".json"}} - {"README.md"}
    assert pages, "no docs pages found"
    assert {page for page in pages if f"]({page})" not in index} == set()


@pytest.mark.parametrize("path", documents(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_the_link_check_sees_a_missing_heading_and_a_missing_file(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n## Words for `status`\n\n[a](#words-for-status) [b](#nowhere) [c](gone.md)\n")
    assert broken_links(page) == ["#nowhere: no such heading", "gone.md: no such file"]


def test_local_settings_example_has_every_setting_and_is_valid() -> None:
    example = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    assert {setting.name for setting in SETTINGS} <= set(example)
    load_settings(example)  # a copy with only the vault and the service changed must load


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


def test_queued_events_reach_the_function_as_event_grid_wrote_them_and_poison_after_retries() -> None:
    """Event Grid writes the event JSON as the message text: the host must not base64-decode it."""
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    assert queues["messageEncoding"] == "none"
    assert 5 <= queues["maxDequeueCount"] <= 20  # retries, then the poison queue
    hours, minutes, seconds = (int(part) for part in queues["visibilityTimeout"].split(":"))
    assert 60 <= hours * 3600 + minutes * 60 + seconds <= 3600  # a retry minutes away, as Event Grid's would be


def test_emulator_tests_and_infra_are_not_deployed() -> None:
    ignored = {line.strip() for line in (ROOT / ".funcignore").read_text().splitlines()}
    assert {"emulator/", "local/", "tests/", "infra/", ".venv/"} <= ignored


# The core: what a run needs besides the adapters (shared.keyvault, shared.apim, shared.clients,
# shared.azure_errors) and the composition root that wires them (shared.handlers, function_app).
CORE = (
    "settings",
    "setting_parsers",
    "ncrontab",
    "events",
    "ports",
    "chain",
    "desired",
    "plan",
    "verdicts",
    "expiry",
    "records",
    "report",
    "findings",
    "diagnosis",
    "engine",
    "scope",
    "problems",
    "executor",
    "gather",
    "observe",
    "store_sync",
    "backend_sync",
    "pacing",
    "pfx",
    "bundles",
    "service_kind",
    "ca_store",
    "backend_tls",
    "backing_secret",
    "certificate",
    "der",
    "library_errors",
    "reasons",
)


# The rest of shared/: adapters and edges, which may load the SDK, OpenTelemetry or rich.
EDGES = (
    "__init__",
    "__main__",
    "apim",
    "azure_errors",
    "clients",
    "handlers",
    "keyvault",
    "render",
    "telemetry",
    "pacing_policy",
)


def test_every_module_of_shared_is_in_the_core_or_a_named_edge() -> None:
    # A new module is checked for purity only once it is in CORE: one left out of both lists fails here.
    assert {path.stem for path in (ROOT / "shared").glob("*.py")} == {*CORE, *EDGES}


def azure_modules_loaded_by(module: str) -> list[str]:
    """The ``azure.*`` modules in ``sys.modules`` after importing `module` in a fresh interpreter."""
    probe = f"import sys, {module}; print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] == 'azure')))"
    result = subprocess.run(  # noqa: S603 - our own interpreter and a probe made here
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout.split()


@pytest.mark.parametrize("module", [f"shared.{name}" for name in CORE])
def test_the_core_loads_nothing_from_azure(module: str) -> None:
    assert azure_modules_loaded_by(module) == []


def modules_loaded_by(module: str, roots: tuple[str, ...]) -> list[str]:
    """The modules under `roots` in ``sys.modules`` after importing `module` in a fresh interpreter."""
    probe = f"import sys, {module}; print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in {roots!r})))"
    result = subprocess.run(  # noqa: S603 - our own interpreter and a probe made here
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout.split()


@pytest.mark.parametrize("module", [f"shared.{name}" for name in CORE])
def test_the_core_loads_neither_opentelemetry_nor_rich(module: str) -> None:
    # Telemetry (shared.telemetry) and the CLI's progress bars are edges; the engine only calls Progress.
    assert modules_loaded_by(module, ("opentelemetry", "rich")) == []


def test_the_functions_do_not_load_rich_nor_the_distro_unless_telemetry_is_configured() -> None:
    loaded = modules_loaded_by("function_app", ("rich", "azure"))
    assert not [m for m in loaded if m == "rich" or m.startswith("azure.monitor")]


def test_the_purity_probe_sees_an_adapter_imported_by_the_core() -> None:
    # The same probe on the composition root, which imports the adapters, finds the SDK: the check can fail.
    assert "azure.core" in azure_modules_loaded_by("shared.handlers")
