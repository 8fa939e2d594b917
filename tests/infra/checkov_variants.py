"""checkov over what each network mode and hosting plan deploys (`make check-infra`).

checkov reads Bicep without evaluating it: a property written as `private ? 'Deny' : 'Allow'` is
neither value to it. So the templates pass mode-dependent network values to their modules as
parameters, and this script renders infra/ once per variant (network mode x hosting plan): every
module main.bicep calls is written out per call, with each property that is exactly one of the
module's parameters replaced by the value that call passes, and an in-line skip marked
`[when name=value]` is kept only where the call passes that value. (Parameter defaults would not
do: checkov's graph links same-named parameters across files, so two calls of one module would
see each other's values.) checkov then runs on each rendering and must report no failed check;
in private network mode the storage network checks and the app's public network access check
must pass, not be skipped.

    python -m tests.infra.checkov_variants            # all four variants
    python -m tests.infra.checkov_variants --keep DIR # also leave the renderings in DIR
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.infra.bicep_model import INFRA, Evaluator, module_parameters, template

VARIANTS = [(network, plan) for network in ("Public", "Private") for plan in ("FlexConsumption", "Dedicated")]
# The values azd would pass for the required parameters; only names and ids are built from them.
DEPLOYMENT = {
    "environmentName": "trustsync-ci",
    "location": "westeurope",
    "keyVaultName": "kv-certs",
    "keyVaultResourceGroupName": "rg-security",
    "apimResourceId": "/subscriptions/0/resourceGroups/rg-apim/providers/Microsoft.ApiManagement/service/apim",
}
WHEN = re.compile(r"checkov:skip=\S+:\s*\[when (\w+)=([^\]]+)\]")
PROPERTY = re.compile(r"^(\s+[\w']+: )(\w+)\s*$")
# In private network mode these checks must PASS on these rendered resources (file, resource).
PRIVATE_MODE_PASSES = {
    ("CKV_AZURE_35", "modules/storage.storage.bicep"),
    ("CKV_AZURE_59", "modules/storage.storage.bicep"),
    ("CKV_AZURE_35", "modules/storage.deadLetterStorage.bicep"),
    # Event Grid delivers to the storage queue: the app's public network access is Disabled.
    ("CKV_AZURE_222", "modules/function-app.functionApp.bicep"),
}


def literal(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and "\n" not in value:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return None


def render_module(text: str, values: dict[str, Any]) -> str:
    """The module's text with the call's values in place of its parameters, and its skips filtered."""
    lines = []
    for line in text.splitlines():
        property_ = PROPERTY.match(line)
        if property_ and property_[2] in values and literal(values[property_[2]]) is not None:
            line = f"{property_[1]}{literal(values[property_[2]])}"
        when = WHEN.search(line)
        # A skip for another value of the parameter: the check must pass (or fail) here.
        if when and literal(values.get(when[1])) is not None and str(literal(values[when[1]])).strip("'") != when[2]:
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


def render(network: str, plan: str, target: Path) -> None:
    shutil.copytree(INFRA, target)
    main = template("main.bicep")
    evaluator = Evaluator.for_template(main, {**DEPLOYMENT, "networkMode": network, "hostingPlan": plan})
    rendered: set[Path] = set()
    for symbol, module in main.modules.items():
        source = INFRA / module.path
        values = module_parameters(evaluator, module)
        destination = target / module.path
        destination = destination.with_name(f"{destination.stem}.{symbol}.bicep")
        destination.write_text(render_module(source.read_text(), values))
        rendered.add(target / module.path)
    for path in rendered:
        # A module that another module calls (function-app.bicep -> dedicated-site-config.bicep)
        # stays; the ones main.bicep calls exist only as their per-call renderings.
        if not any(f"'{path.name}'" in other.read_text() for other in target.rglob("*.bicep") if other != path):
            path.unlink()


@dataclass
class Report:
    variant: str
    passed: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    skipped: list[dict[str, Any]]


def run_checkov(directory: Path, variant: str) -> Report:
    checkov = Path(sys.executable).with_name("checkov")
    result = subprocess.run(  # noqa: S603 - fixed argv: checkov of this venv on a rendered copy
        [str(checkov), "--directory", str(directory), "--framework", "bicep", "--skip-download", "--output", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode not in (0, 1):
        raise SystemExit(f"checkov failed on {variant}:\n{result.stderr}")
    document = json.loads(result.stdout)
    reports = document if isinstance(document, list) else [document]
    passed, failed, skipped = [], [], []
    for report in reports:
        results = report.get("results", {})
        passed += results.get("passed_checks", [])
        failed += results.get("failed_checks", [])
        skipped += results.get("skipped_checks", [])
    return Report(variant, passed, failed, skipped)


def where(check: dict[str, Any]) -> tuple[str, str]:
    return check["check_id"], str(check["file_path"]).lstrip("/")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="leave the renderings in this directory")
    arguments = parser.parse_args()
    problems = []
    with tempfile.TemporaryDirectory() as scratch:
        root = arguments.keep or Path(scratch)
        for network, plan in VARIANTS:
            variant = f"{network.lower()}-{plan.lower()}"
            directory = root / variant
            if directory.exists():
                shutil.rmtree(directory)
            render(network, plan, directory)
            report = run_checkov(directory, variant)
            print(
                f"checkov {variant:<25} passed {len(report.passed):>3}  failed {len(report.failed):>3}  "
                f"skipped {len(report.skipped):>3}"
            )
            for check in report.failed:
                problems.append(f"{variant}: {check['check_id']} FAILED on {check['resource']} ({check['file_path']})")
            if network == "Private":
                passed = {where(check) for check in report.passed}
                for expected in sorted(PRIVATE_MODE_PASSES - passed):
                    problems.append(f"{variant}: {expected[0]} must pass on {expected[1]} in private mode")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
