"""The operator's command installs like one: `pip install .` (or `pipx install .`) gives `trustsync`.

shared/ is the package `shared` from the app root, where the Functions worker imports it, and the
package `trustsync` once installed (pyproject.toml maps the folder). The install here is the one a
fresh machine can do offline, as CI does: no package index, the setuptools that requirements-dev.txt
pins as the build backend, the dependencies those of the running interpreter.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from shared.__main__ import COMMAND, main
from tests.test_project import CORE

ROOT = Path(__file__).resolve().parent.parent
# What a build must never see or leave behind in the checkout (it writes build/ and *.egg-info/).
NOT_SOURCE = (".git", ".venv", ".venv-*", "__pycache__", "*.pyc", ".*_cache", ".hypothesis", "build", "*.egg-info")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install .` of a copy of the checkout into a folder of its own; returns that folder."""
    source = tmp_path_factory.mktemp("checkout") / "apim-trust-sync"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(  # noqa: S603 - our own interpreter's pip on a copy of our own checkout
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",  # offline: nothing from a package index, the build backend included
            "--no-build-isolation",
            "--no-deps",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return target


def run_installed(site: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`argv` with the installed package importable and the checkout not (`cwd` is outside it)."""
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    env["PYTHONPATH"] = str(site)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)  # noqa: S603


def test_the_install_holds_the_package_trustsync_its_command_and_nothing_else(installed: Path) -> None:
    entries = sorted(entry.name for entry in installed.iterdir())
    assert [re.sub(r"-[^-]+\.dist-info$", "-*.dist-info", name) for name in entries] == [
        "apim_trust_sync-*.dist-info",
        "bin",
        "trustsync",
    ]
    assert sorted(entry.name for entry in (installed / "bin").iterdir()) == [COMMAND]
    assert {path.name for path in (installed / "trustsync").glob("*.py")} == {
        path.name for path in (ROOT / "shared").glob("*.py")
    }


def test_trustsync_help_names_itself_and_the_exit_codes(installed: Path, tmp_path: Path) -> None:
    result = run_installed(installed, str(installed / "bin" / COMMAND), "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: trustsync [-h]")
    assert "\n  trustsync plan --json | jq .status   the report as JSON\n" in result.stdout
    assert "python -m shared" not in result.stdout
    exit_codes = result.stdout.split("exit codes:\n", 1)[1].split("\n\n", 1)[0]
    assert re.findall(r"^  (\d+) ", exit_codes, re.MULTILINE) == ["0", "1", "2", "3", "4", "64"]


def test_trustsync_usage_error_exits_64_under_its_own_name(installed: Path, tmp_path: Path) -> None:
    result = run_installed(installed, str(installed / "bin" / COMMAND), "frobnicate", cwd=tmp_path)
    assert result.returncode == 64
    assert "trustsync: error: argument command: invalid choice: 'frobnicate'" in result.stderr
    assert result.stdout == ""


def test_installed_every_module_imports_as_trustsync_and_shared_does_not_exist(installed: Path, tmp_path: Path) -> None:
    probe = """
import importlib, pkgutil, sys
import trustsync
for module in pkgutil.iter_modules(trustsync.__path__):
    if module.name != "__main__":
        importlib.import_module(f"trustsync.{module.name}")
print(trustsync.__file__)
print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] == "shared")) or "-")
try:
    import shared
except ModuleNotFoundError:
    print("no shared")
"""
    result = run_installed(installed, sys.executable, "-c", probe, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    location, shared_modules, shared_import = result.stdout.splitlines()
    assert Path(location) == installed / "trustsync" / "__init__.py"
    assert shared_modules == "-"
    assert shared_import == "no shared"


def test_installed_the_core_still_loads_nothing_from_azure(installed: Path, tmp_path: Path) -> None:
    # One interpreter for all of the core: the union is empty exactly when each module's import is.
    core = ", ".join(f"trustsync.{name}" for name in CORE)
    probe = f"import sys, {core}; print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] == 'azure')))"
    result = run_installed(installed, sys.executable, "-c", probe, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


def absolute_imports_of_the_package(path: Path) -> list[str]:
    """`import shared…` / `from shared… import` lines in `path`: they break the installed `trustsync`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{path.name}:{node.lineno}: {name}" for name in names if name.split(".")[0] == "shared"]
    return found


def test_shared_imports_its_own_modules_relatively() -> None:
    found = [line for path in sorted((ROOT / "shared").glob("*.py")) for line in absolute_imports_of_the_package(path)]
    assert found == []


def test_the_relative_import_check_sees_an_absolute_one(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("from .chain import ChainError\nfrom shared.plan import plan\nimport shared.ports\n")
    assert absolute_imports_of_the_package(module) == ["module.py:2: shared.plan", "module.py:3: shared.ports"]


def test_the_pinned_setuptools_is_a_build_backend_the_project_accepts() -> None:
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    assert build["build-backend"] == "setuptools.build_meta"
    (wanted,) = (Requirement(line) for line in build["requires"])
    pins = (line.split("#")[0].strip() for line in (ROOT / "requirements-dev.txt").read_text().splitlines())
    (pinned,) = (Requirement(line) for line in pins if line.startswith("setuptools=="))
    assert wanted.name == "setuptools"
    assert wanted.specifier.contains(str(pinned.specifier).removeprefix("=="))


def test_the_command_is_the_installed_entry_point() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {COMMAND: "trustsync.__main__:cli"}


def test_from_the_app_root_the_command_is_still_python_m_shared(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m shared [-h]")
    assert "\n  python -m shared plan                       what a sync would change, changing nothing\n" in out
    assert "trustsync" not in out
