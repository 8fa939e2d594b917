"""The azd hooks (scripts/*.sh), run for real against a recording stand-in for the Azure CLI.

The stand-in `az` logs every call and answers the few queries the hooks make, so these tests
check what the hooks would do in Azure: which template they deploy where, with which parameters,
what they refuse to do, and what the predown hook deletes (and in which order). The PowerShell
twins are not run: no PowerShell is installable here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.infra.bicep_model import REPO

SHELLS = [shell for shell in ("sh", "bash") if shutil.which(shell)]

FAKE_AZ = """\
#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_AZ_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
joined = " ".join(args)
if args[:2] == ["account", "show"]:
    sys.exit(0)
if args[:2] == ["cloud", "show"]:
    print(os.environ.get("FAKE_AZ_CLOUD", "AzureCloud"))
elif args[:2] == ["keyvault", "show"]:
    print(os.environ.get("FAKE_KV_RBAC", "true"))
    print("chinanorth3" if os.environ.get("FAKE_AZ_CLOUD") == "AzureChinaCloud" else "westeurope")
elif args[:3] == ["functionapp", "function", "show"]:
    counter = os.environ["FAKE_AZ_LOG"] + ".polls"
    polls = int(open(counter).read()) if os.path.exists(counter) else 0
    open(counter, "w").write(str(polls + 1))
    sys.exit(0 if polls >= int(os.environ.get("FAKE_FUNCTION_READY_AFTER", "0")) else 3)
elif args[:3] == ["deployment", "group", "show"]:
    print(os.environ.get("FAKE_GROUP_RESOURCES", ""))
elif args[:3] == ["deployment", "sub", "show"]:
    print(os.environ.get("FAKE_SUB_RESOURCES", ""))
"""

ENV = {
    "AZURE_ENV_NAME": "dev",
    "AZURE_SUBSCRIPTION_ID": "11111111-1111-1111-1111-111111111111",
    "AZURE_LOCATION": "westeurope",
    "AZURE_CLOUD": "AzureCloud",
    "AZURE_RESOURCE_GROUP": "rg-dev",
    "AZURE_FUNCTION_APP_NAME": "func-trustsync-abc",
    "AZURE_FUNCTION_APP_ID": "/subscriptions/1111/resourceGroups/rg-dev/providers/Microsoft.Web/sites/func-trustsync-abc",
    "AZURE_FUNCTION_APP_URL": "https://func-trustsync-abc.azurewebsites.net",
    "TRUSTSYNC_PRINCIPAL_ID": "22222222-2222-2222-2222-222222222222",
    "TRUSTSYNC_KEYVAULT_NAME": "kv-certs",
    "TRUSTSYNC_KEYVAULT_RESOURCE_GROUP": "rg-security",
    "TRUSTSYNC_KEYVAULT_SUBSCRIPTION_ID": "33333333-3333-3333-3333-333333333333",
    "TRUSTSYNC_APIM_RESOURCE_ID": (
        "/subscriptions/44444444-4444-4444-4444-444444444444/resourceGroups/rg-apim"
        "/providers/Microsoft.ApiManagement/service/apim-prod"
    ),
    "TRUSTSYNC_CERTIFICATE_NAMES": "*",
    "TRUSTSYNC_DEADLETTER_STORAGE_ACCOUNT_ID": "/subscriptions/1111/resourceGroups/rg-dev/providers/Microsoft.Storage/storageAccounts/st1",
    "TRUSTSYNC_DEADLETTER_CONTAINER": "eventgrid-deadletter",
    "TRUSTSYNC_POLL_SECONDS": "0",
}


@dataclass
class Run:
    returncode: int
    output: str
    calls: list[list[str]]

    def calls_to(self, *prefix: str) -> list[list[str]]:
        return [call for call in self.calls if call[: len(prefix)] == list(prefix)]

    def parameters(self, call: list[str]) -> dict[str, str]:
        start = call.index("--parameters") + 1
        values = []
        for item in call[start:]:
            if item.startswith("--"):
                break
            values.append(item)
        return dict(item.split("=", 1) for item in values)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    az = directory / "az"
    az.write_text(FAKE_AZ.format(python=sys.executable))
    az.chmod(0o755)
    return directory


def run_hook(shell: str, hook: str, bin_dir: Path, **overrides: str) -> Run:
    log = bin_dir / "az.log"
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "FAKE_AZ_LOG": str(log), **ENV, **overrides}
    env = {key: value for key, value in env.items() if value != "<unset>"}
    # The hooks are run as azd runs them: from the repository root, by the named shell.
    result = subprocess.run(  # noqa: S603 - fixed argv of a test-controlled shell and script
        [str(shutil.which(shell)), f"scripts/{hook}.sh"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return Run(result.returncode, result.stdout + result.stderr, calls)


@pytest.mark.parametrize("shell", SHELLS)
def test_postprovision_deploys_access_with_the_vault_region(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "postprovision", bin_dir)
    assert run.returncode == 0, run.output
    (deploy,) = run.calls_to("deployment", "sub", "create")
    assert deploy[deploy.index("--template-file") + 1] == "infra/access.bicep"
    assert deploy[deploy.index("--name") + 1] == "trustsync-access-dev"
    assert deploy[deploy.index("--subscription") + 1] == ENV["AZURE_SUBSCRIPTION_ID"]
    parameters = run.parameters(deploy)
    assert parameters["keyVaultLocation"] == "westeurope"
    assert parameters["keyVaultSubscriptionId"] == ENV["TRUSTSYNC_KEYVAULT_SUBSCRIPTION_ID"]
    assert parameters["principalId"] == ENV["TRUSTSYNC_PRINCIPAL_ID"]
    assert parameters["certificateNames"] == "*"
    assert parameters["scopeKeyVaultRolesToObjects"] == "true"
    assert parameters["existingSystemTopicName"] == ""
    # The vault is read in its own subscription; nothing changes the caller's az context.
    (show,) = run.calls_to("keyvault", "show")
    assert show[show.index("--subscription") + 1] == ENV["TRUSTSYNC_KEYVAULT_SUBSCRIPTION_ID"]
    assert not run.calls_to("account", "set")


@pytest.mark.parametrize("shell", SHELLS)
def test_postprovision_refuses_a_vault_with_access_policies(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "postprovision", bin_dir, FAKE_KV_RBAC="false")
    assert run.returncode != 0
    assert "Azure RBAC permission model" in run.output
    assert not run.calls_to("deployment")


@pytest.mark.parametrize("shell", SHELLS)
def test_hooks_refuse_an_az_logged_in_to_another_cloud(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "postprovision", bin_dir, AZURE_CLOUD="AzureChinaCloud")
    assert run.returncode != 0
    assert "az cloud set --name AzureChinaCloud" in run.output
    assert not run.calls_to("deployment")


@pytest.mark.parametrize("shell", SHELLS)
def test_hooks_work_in_azure_china_when_az_matches(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "postprovision", bin_dir, AZURE_CLOUD="AzureChinaCloud", FAKE_AZ_CLOUD="AzureChinaCloud")
    assert run.returncode == 0, run.output
    (deploy,) = run.calls_to("deployment", "sub", "create")
    assert run.parameters(deploy)["keyVaultLocation"] == "chinanorth3"


@pytest.mark.parametrize("shell", SHELLS)
def test_postdeploy_waits_for_the_function_then_subscribes(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "postdeploy", bin_dir, FAKE_FUNCTION_READY_AFTER="2")
    assert run.returncode == 0, run.output
    assert len(run.calls_to("functionapp", "function", "show")) == 3
    (deploy,) = run.calls_to("deployment", "group", "create")
    assert run.calls.index(deploy) > run.calls.index(run.calls_to("functionapp", "function", "show")[-1])
    assert deploy[deploy.index("--template-file") + 1] == "infra/eventgrid.bicep"
    assert deploy[deploy.index("--resource-group") + 1] == "rg-security"
    assert deploy[deploy.index("--subscription") + 1] == ENV["TRUSTSYNC_KEYVAULT_SUBSCRIPTION_ID"]
    parameters = run.parameters(deploy)
    assert parameters["systemTopicName"] == "evgt-trustsync-dev"  # the name access/keyvault.bicep gives it
    assert parameters["functionAppId"] == ENV["AZURE_FUNCTION_APP_ID"]
    assert "/api/resync" in run.output


@pytest.mark.parametrize("shell", SHELLS)
def test_postdeploy_uses_an_existing_system_topic(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "postdeploy", bin_dir, TRUSTSYNC_EXISTING_SYSTEM_TOPIC="kv-certs-events")
    assert run.returncode == 0, run.output
    (deploy,) = run.calls_to("deployment", "group", "create")
    assert run.parameters(deploy)["systemTopicName"] == "kv-certs-events"


KV = "/subscriptions/3333/resourceGroups/rg-security"
APIM = "/subscriptions/4444/resourceGroups/rg-apim"
EVENT_SUBSCRIPTION = (
    f"{KV}/providers/Microsoft.EventGrid/systemTopics/evgt-trustsync-dev/eventSubscriptions/trustsync-dev"
)
TOPIC = f"{KV}/providers/Microsoft.EventGrid/systemTopics/evgt-trustsync-dev"
KV_ASSIGNMENT = (
    f"{KV}/providers/Microsoft.KeyVault/vaults/kv-certs/providers/Microsoft.Authorization/roleAssignments/aaa"
)
APIM_ASSIGNMENT = (
    f"{APIM}/providers/Microsoft.ApiManagement/service/apim-prod/providers/Microsoft.Authorization/roleAssignments/bbb"
)
ROLE = "/subscriptions/4444/providers/Microsoft.Authorization/roleDefinitions/ccc"


@pytest.mark.parametrize("shell", SHELLS)
def test_predown_deletes_what_the_hooks_created_in_dependency_order(shell: str, bin_dir: Path) -> None:
    run = run_hook(
        shell,
        "predown",
        bin_dir,
        FAKE_GROUP_RESOURCES=EVENT_SUBSCRIPTION,
        FAKE_SUB_RESOURCES="\n".join([TOPIC, KV_ASSIGNMENT, ROLE, APIM_ASSIGNMENT]),
    )
    assert run.returncode == 0, run.output
    deletions = [call for call in run.calls if "delete" in call and call[0] != "deployment"]
    assert deletions == [
        ["resource", "delete", "--ids", EVENT_SUBSCRIPTION, "--output", "none"],
        ["role", "assignment", "delete", "--ids", KV_ASSIGNMENT, "--output", "none"],
        ["role", "assignment", "delete", "--ids", APIM_ASSIGNMENT, "--output", "none"],
        [
            "role",
            "definition",
            "delete",
            "--name",
            "ccc",
            "--scope",
            ENV["TRUSTSYNC_APIM_RESOURCE_ID"].split("/providers/")[0],
            "--output",
            "none",
        ],
        ["resource", "delete", "--ids", TOPIC, "--output", "none"],
    ]
    # Never a resource group, the vault or the APIM service.
    assert not run.calls_to("group", "delete")


@pytest.mark.parametrize("shell", SHELLS)
def test_predown_is_a_no_op_when_nothing_was_deployed(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "predown", bin_dir)
    assert run.returncode == 0, run.output
    assert not [call for call in run.calls if "delete" in call and call[0] != "deployment"]


@pytest.mark.parametrize("shell", SHELLS)
def test_hook_run_by_hand_reads_the_azd_environment(shell: str, bin_dir: Path) -> None:
    azd = bin_dir / "azd"
    values = "\n".join(f'{key}="{value}"' for key, value in ENV.items())
    azd.write_text(f"#!/bin/sh\ncat <<'EOF'\n{values}\nEOF\n")
    azd.chmod(0o755)
    run = run_hook(shell, "postdeploy", bin_dir, AZURE_FUNCTION_APP_NAME="<unset>", AZURE_ENV_NAME="<unset>")
    assert run.returncode == 0, run.output
    (deploy,) = run.calls_to("deployment", "group", "create")
    assert run.parameters(deploy)["environmentName"] == "dev"
