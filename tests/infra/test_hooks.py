"""The azd hooks (scripts/*.sh), run for real against a recording stand-in for the Azure CLI.

The stand-in `az` logs every call and answers the few queries the hooks make, so these tests
check what the hooks would do in Azure: which hosting plan they choose, which permissions they
require where, which template they deploy where, with which parameters, which system topic they
use, what they refuse to do, and what the predown hook deletes (and in which order). The
PowerShell twins are not run (no PowerShell is installable here); test_powershell_hooks_mirror
checks that they make the same az calls and pass the same deployment parameters.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.infra.bicep_model import REPO

SHELLS = [shell for shell in ("sh", "bash") if shutil.which(shell)]

FAKE_AZ = """\
#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_AZ_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
env = os.environ.get
if args[:2] == ["account", "show"]:
    sys.exit(0)
if args[:2] == ["cloud", "show"]:
    print(env("FAKE_AZ_CLOUD", "AzureCloud"))
elif args[:2] == ["account", "list-locations"]:
    china = env("FAKE_AZ_CLOUD") == "AzureChinaCloud"
    locations = env("FAKE_LOCATIONS", "chinanorth3\\nchinanorth2" if china else "westeurope\\nnortheurope")
    if locations == "<fail>":
        sys.exit(1)
    print(locations)
elif args[:2] == ["provider", "show"]:
    state = json.loads(env("FAKE_PROVIDERS", "{}")).get(args[args.index("--namespace") + 1], "Registered")
    if state == "<fail>":
        sys.exit(1)
    print(state)
elif args[:2] == ["provider", "register"]:
    sys.exit(1 if env("FAKE_REGISTER_FAILS") == "true" else 0)
elif args[:3] == ["keyvault", "certificate", "show"]:
    # The vault's data plane, as az reports it: not found, forbidden by RBAC or by the firewall,
    # or out of reach (a private vault seen from outside its network).
    outcome = json.loads(env("FAKE_CERTIFICATES", "{}")).get(args[args.index("--name") + 1], "exists")
    errors = {
        "missing": "ERROR: (CertificateNotFound) A certificate with (name/id) x was not found in this key vault.",
        "forbidden": "ERROR: (Forbidden) Caller is not authorized to perform action on resource.\\nInner error: ForbiddenByRbac",
        "firewall": "ERROR: (Forbidden) Client address is not authorized.\\nInner error: ForbiddenByFirewall",
        "unreachable": "ERROR: HTTPSConnectionPool(host='kv-certs.vault.azure.net', port=443): Max retries exceeded",
        "other": "ERROR: something unexpected\\nmore detail",
    }
    if outcome in errors:
        print(errors[outcome], file=sys.stderr)
        sys.exit(1)
    print("https://kv-certs.vault.azure.net/certificates/x")
elif args[:3] == ["keyvault", "secret", "list-versions"]:
    # Metadata only: the hook never asks for a secret's value.
    outcome = json.loads(env("FAKE_SECRETS", "{}")).get(args[args.index("--name") + 1], "exists")
    if outcome == "missing":
        print("ERROR: (SecretNotFound) A secret with (name/id) x was not found in this key vault.", file=sys.stderr)
        sys.exit(1)
    if outcome == "forbidden":
        print("ERROR: (Forbidden) Caller is not authorized.\\nInner error: ForbiddenByRbac", file=sys.stderr)
        sys.exit(1)
    print("https://kv-certs.vault.azure.net/secrets/x/1")
elif args[:2] == ["keyvault", "show"]:
    if env("FAKE_KV_SHOW_FAILS") == "true":
        sys.exit(3)
    print(env("FAKE_KV_RBAC", "true"))
    print("chinanorth3" if env("FAKE_AZ_CLOUD") == "AzureChinaCloud" else "westeurope")
    print(env("FAKE_KV_ID", "/subscriptions/3333/resourceGroups/rg-security/providers/Microsoft.KeyVault/vaults/kv-certs"))
elif args[:2] == ["functionapp", "list-flexconsumption-locations"]:
    locations = env("FAKE_FLEX_LOCATIONS", "westeurope\\nnortheurope")
    if locations == "<fail>":
        sys.exit(2)
    print(locations)
elif args[:1] == ["rest"] and args[args.index("--method") + 1] == "patch":
    sys.exit(1 if env("FAKE_PATCH_FAILS") == "true" else 0)
elif args[:1] == ["rest"]:
    # Microsoft.Authorization/permissions of the caller at the URL's scope: the longest key of
    # FAKE_PERMISSIONS the URL contains wins; default: everything.
    url = args[args.index("--url") + 1]
    table = json.loads(env("FAKE_PERMISSIONS", "{}"))
    keys = sorted((k for k in table if k in url), key=len, reverse=True)
    entries = table[keys[0]] if keys else [["*", ""]]
    if entries == "<fail>":
        sys.exit(1)
    for actions, not_actions in entries:
        print(actions + "\\t" + not_actions)
elif args[:3] == ["eventgrid", "system-topic", "list"]:
    print(env("FAKE_SYSTEM_TOPICS", ""))
elif args[:3] == ["eventgrid", "system-topic", "show"]:
    print(env("FAKE_TOPIC_IDENTITY", "SystemAssigned"))
elif args[:4] == ["eventgrid", "system-topic", "event-subscription", "list"]:
    print(env("FAKE_TOPIC_SUBSCRIPTIONS", ""))
elif args[:3] == ["functionapp", "function", "show"]:
    counter = os.environ["FAKE_AZ_LOG"] + ".polls"
    polls = int(open(counter).read()) if os.path.exists(counter) else 0
    open(counter, "w").write(str(polls + 1))
    sys.exit(0 if polls >= int(env("FAKE_FUNCTION_READY_AFTER", "0")) else 3)
elif args[:3] in (["deployment", "group", "show"], ["deployment", "sub", "show"]):
    kind = "GROUP" if args[1] == "group" else "SUB"
    error = env(f"FAKE_{kind}_SHOW_ERROR")
    if error:
        print(error, file=sys.stderr)
        sys.exit(3)
    print(env(f"FAKE_{kind}_RESOURCES", ""))
"""

# The stand-in azd: `azd env get-values` prints FAKE_AZD_VALUES, `azd env set` is recorded in the
# same log as az calls (as ["azd", ...]).
FAKE_AZD = """\
#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_AZ_LOG"], "a") as log:
    log.write(json.dumps(["azd", *args]) + "\\n")
if args[:2] == ["env", "get-values"]:
    print(os.environ.get("FAKE_AZD_VALUES", ""))
"""

# The stand-in curl: the deployer's public address as https://api.ipify.org would tell it.
FAKE_CURL = """\
#!{python}
import json, os, sys
with open(os.environ["FAKE_AZ_LOG"], "a") as log:
    log.write(json.dumps(["curl", *sys.argv[1:]]) + "\\n")
address = os.environ.get("FAKE_PUBLIC_IP", "<fail>")
if address == "<fail>":
    sys.exit(7)
print(address, end="")
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
    # main.bicep outputs: the names it built from the environment name.
    "TRUSTSYNC_EVENT_SUBSCRIPTION_NAME": "trustsync-dev",
    "TRUSTSYNC_ACCESS_DEPLOYMENT_NAME": "trustsync-access-dev",
    "TRUSTSYNC_EVENTGRID_DEPLOYMENT_NAME": "trustsync-eventgrid-dev",
    "TRUSTSYNC_NEW_SYSTEM_TOPIC_NAME": "evgt-trustsync-dev",
    "TRUSTSYNC_ACTION_GROUP_ID": "/subscriptions/1111/resourceGroups/rg-dev/providers/Microsoft.Insights/actionGroups/ag",
}
VAULT_ID = "/subscriptions/3333/resourceGroups/rg-security/providers/Microsoft.KeyVault/vaults/kv-certs"


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
    for name, script in (("az", FAKE_AZ), ("azd", FAKE_AZD), ("curl", FAKE_CURL)):
        tool = directory / name
        tool.write_text(script.replace("{python}", sys.executable))
        tool.chmod(0o755)
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


def azd_env_sets(run: Run) -> dict[str, str]:
    return {call[3]: call[4] for call in run.calls_to("azd", "env", "set")}


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
    assert parameters["newSystemTopicName"] == "evgt-trustsync-dev"
    assert parameters["eventSubscriptionName"] == "trustsync-dev"  # the delivery alerts watch it
    assert parameters["actionGroupId"] == ENV["TRUSTSYNC_ACTION_GROUP_ID"]
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
    assert parameters["eventSubscriptionName"] == "trustsync-dev"
    # One list of certificates: the app setting. The subscription is not filtered by name.
    assert "certificateNames" not in parameters
    assert "/api/resync" in run.output
    # Public network mode (TRUSTSYNC_EVENT_QUEUE_NAME empty): Event Grid pushes to on_keyvault_event.
    assert parameters["eventQueueName"] == ""
    assert {call[call.index("--function-name") + 1] for call in run.calls_to("functionapp", "function", "show")} == {
        "on_keyvault_event"
    }


@pytest.mark.parametrize("shell", SHELLS)
def test_private_mode_postdeploy_waits_for_the_queue_function_and_subscribes_the_queue(
    shell: str, bin_dir: Path
) -> None:
    run = run_hook(
        shell, "postdeploy", bin_dir, FAKE_FUNCTION_READY_AFTER="1", TRUSTSYNC_EVENT_QUEUE_NAME="keyvault-events"
    )
    assert run.returncode == 0, run.output
    shows = run.calls_to("functionapp", "function", "show")
    assert {call[call.index("--function-name") + 1] for call in shows} == {"on_keyvault_event_queue"}
    (deploy,) = run.calls_to("deployment", "group", "create")
    assert run.parameters(deploy)["eventQueueName"] == "keyvault-events"
    assert "queue keyvault-events" in run.output


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("queue", ["", "keyvault-events"])
def test_postprovision_passes_the_event_queue_for_the_topic_identity_role(
    shell: str, bin_dir: Path, queue: str
) -> None:
    run = run_hook(shell, "postprovision", bin_dir, TRUSTSYNC_EVENT_QUEUE_NAME=queue)
    assert run.returncode == 0, run.output
    (deploy,) = run.calls_to("deployment", "sub", "create")
    assert run.parameters(deploy)["eventQueueName"] == queue


@pytest.mark.parametrize("shell", SHELLS)
def test_postdeploy_subscribes_on_the_topic_postprovision_resolved(shell: str, bin_dir: Path) -> None:
    run = run_hook(
        shell,
        "postdeploy",
        bin_dir,
        TRUSTSYNC_SYSTEM_TOPIC_NAME="kv-certs-events",
        TRUSTSYNC_SYSTEM_TOPIC_RESOURCE_GROUP="rg-events",
    )
    assert run.returncode == 0, run.output
    (deploy,) = run.calls_to("deployment", "group", "create")
    assert run.parameters(deploy)["systemTopicName"] == "kv-certs-events"
    # The event subscription is a child of the topic: deployed into the topic's resource group.
    assert deploy[deploy.index("--resource-group") + 1] == "rg-events"


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
    values = "\n".join(f'{key}="{value}"' for key, value in ENV.items())
    run = run_hook(
        shell,
        "postdeploy",
        bin_dir,
        AZURE_FUNCTION_APP_NAME="<unset>",
        AZURE_ENV_NAME="<unset>",
        TRUSTSYNC_EVENT_SUBSCRIPTION_NAME="<unset>",
        FAKE_AZD_VALUES=values.replace('"trustsync-dev"', '"trustsync-from-azd"'),
    )
    assert run.returncode == 0, run.output
    assert run.calls_to("azd", "env", "get-values")
    (deploy,) = run.calls_to("deployment", "group", "create")
    assert run.parameters(deploy)["eventSubscriptionName"] == "trustsync-from-azd"


@pytest.mark.parametrize("shell", SHELLS)
def test_hooks_fall_back_to_the_names_of_an_older_environment(shell: str, bin_dir: Path) -> None:
    # An environment provisioned before main.bicep output the names: the names it had then.
    unset = {
        name: "<unset>"
        for name in (
            "TRUSTSYNC_EVENT_SUBSCRIPTION_NAME",
            "TRUSTSYNC_ACCESS_DEPLOYMENT_NAME",
            "TRUSTSYNC_EVENTGRID_DEPLOYMENT_NAME",
            "TRUSTSYNC_NEW_SYSTEM_TOPIC_NAME",
        )
    }
    run = run_hook(shell, "postdeploy", bin_dir, **unset)
    assert run.returncode == 0, run.output
    (deploy,) = run.calls_to("deployment", "group", "create")
    assert deploy[deploy.index("--name") + 1] == "trustsync-eventgrid-dev"
    assert run.parameters(deploy)["eventSubscriptionName"] == "trustsync-dev"
    assert run.parameters(deploy)["systemTopicName"] == "evgt-trustsync-dev"


# --- preprovision: the hosting plan ---------------------------------------------------------------


@pytest.mark.parametrize("shell", SHELLS)
def test_auto_plan_is_flex_where_the_region_offers_it(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "preprovision", bin_dir, TRUSTSYNC_HOSTING_PLAN="<unset>")
    assert run.returncode == 0, run.output
    (listing,) = run.calls_to("functionapp", "list-flexconsumption-locations")
    assert listing[listing.index("--subscription") + 1] == ENV["AZURE_SUBSCRIPTION_ID"]
    assert azd_env_sets(run)["TRUSTSYNC_HOSTING_PLAN_RESOLVED"] == "FlexConsumption"
    assert "hosting plan: FlexConsumption (westeurope offers Flex Consumption)" in run.output


@pytest.mark.parametrize("shell", SHELLS)
def test_auto_plan_matches_display_names_of_regions(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "preprovision", bin_dir, FAKE_FLEX_LOCATIONS="North Europe\nWest Europe")
    assert run.returncode == 0, run.output
    assert azd_env_sets(run)["TRUSTSYNC_HOSTING_PLAN_RESOLVED"] == "FlexConsumption"


@pytest.mark.parametrize("shell", SHELLS)
def test_auto_plan_falls_back_to_dedicated_where_flex_is_not_offered(shell: str, bin_dir: Path) -> None:
    run = run_hook(
        shell,
        "preprovision",
        bin_dir,
        AZURE_LOCATION="chinanorth2",
        AZURE_CLOUD="AzureChinaCloud",
        FAKE_AZ_CLOUD="AzureChinaCloud",
        FAKE_FLEX_LOCATIONS="chinanorth3\nchinaeast3",
        TRUSTSYNC_HOSTING_PLAN="Auto",
    )
    assert run.returncode == 0, run.output
    assert azd_env_sets(run)["TRUSTSYNC_HOSTING_PLAN_RESOLVED"] == "Dedicated"
    assert "hosting plan: Dedicated (chinanorth2 does not offer Flex Consumption" in run.output


@pytest.mark.parametrize("shell", SHELLS)
def test_auto_plan_in_a_china_region_that_offers_flex_is_flex(shell: str, bin_dir: Path) -> None:
    # The choice follows the region's offer, not the cloud's name.
    run = run_hook(
        shell,
        "preprovision",
        bin_dir,
        AZURE_LOCATION="chinanorth3",
        AZURE_CLOUD="AzureChinaCloud",
        FAKE_AZ_CLOUD="AzureChinaCloud",
        FAKE_FLEX_LOCATIONS="chinanorth3",
    )
    assert run.returncode == 0, run.output
    assert azd_env_sets(run)["TRUSTSYNC_HOSTING_PLAN_RESOLVED"] == "FlexConsumption"


@pytest.mark.parametrize("shell", SHELLS)
def test_auto_plan_is_dedicated_when_the_offer_cannot_be_read(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "preprovision", bin_dir, FAKE_FLEX_LOCATIONS="<fail>")
    assert run.returncode == 0, run.output
    assert azd_env_sets(run)["TRUSTSYNC_HOSTING_PLAN_RESOLVED"] == "Dedicated"
    assert "could not be listed" in run.output


@pytest.mark.parametrize("shell", SHELLS)
def test_explicit_flex_in_a_region_without_it_fails_before_provision(shell: str, bin_dir: Path) -> None:
    run = run_hook(
        shell, "preprovision", bin_dir, TRUSTSYNC_HOSTING_PLAN="FlexConsumption", FAKE_FLEX_LOCATIONS="northeurope"
    )
    assert run.returncode != 0
    assert "does not offer it" in run.output
    assert not run.calls_to("azd", "env", "set")


@pytest.mark.parametrize("shell", SHELLS)
def test_explicit_dedicated_is_kept(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "preprovision", bin_dir, TRUSTSYNC_HOSTING_PLAN="Dedicated")
    assert run.returncode == 0, run.output
    assert azd_env_sets(run)["TRUSTSYNC_HOSTING_PLAN_RESOLVED"] == "Dedicated"


@pytest.mark.parametrize("shell", SHELLS)
def test_unknown_plan_is_refused(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "preprovision", bin_dir, TRUSTSYNC_HOSTING_PLAN="Consumption")
    assert run.returncode != 0
    assert "use Auto, FlexConsumption or Dedicated" in run.output


@pytest.mark.parametrize("shell", SHELLS)
def test_postprovision_stops_when_the_provisioned_plan_is_not_the_chosen_one(shell: str, bin_dir: Path) -> None:
    same = run_hook(
        shell,
        "postprovision",
        bin_dir,
        TRUSTSYNC_HOSTING_PLAN_RESOLVED="Dedicated",
        TRUSTSYNC_HOSTING_PLAN_DEPLOYED="Dedicated",
    )
    assert same.returncode == 0, same.output
    (bin_dir / "az.log").unlink()  # the second run's calls only
    stale = run_hook(
        shell,
        "postprovision",
        bin_dir,
        TRUSTSYNC_HOSTING_PLAN_RESOLVED="Dedicated",
        TRUSTSYNC_HOSTING_PLAN_DEPLOYED="FlexConsumption",
    )
    assert stale.returncode != 0
    assert "run azd provision again" in stale.output
    assert not stale.calls_to("deployment")


def test_main_parameters_take_the_resolved_plan() -> None:
    parameters = json.loads((REPO / "infra" / "main.parameters.json").read_text())["parameters"]
    assert parameters["hostingPlan"]["value"].startswith("${TRUSTSYNC_HOSTING_PLAN_RESOLVED")


# --- preprovision: permissions ---------------------------------------------------------------------

APIM_GROUP = "/subscriptions/44444444-4444-4444-4444-444444444444/resourceGroups/rg-apim"
VAULT_GROUP = "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/rg-security"
USER_ACCESS_ADMINISTRATOR = [["*/read Microsoft.Authorization/* Microsoft.Support/*", ""]]


@pytest.mark.parametrize("shell", SHELLS)
def test_permissions_are_read_at_each_scope_the_deployment_writes_to(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "preprovision", bin_dir)
    assert run.returncode == 0, run.output
    urls = [call[call.index("--url") + 1] for call in run.calls_to("rest")]
    assert urls == [
        f"/subscriptions/{ENV['AZURE_SUBSCRIPTION_ID']}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01",
        f"{VAULT_GROUP}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01",
        f"{APIM_GROUP}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01",
    ]
    assert "every action the deployment needs is granted" in run.output


@pytest.mark.parametrize("shell", SHELLS)
def test_user_access_administrator_on_the_apim_group_is_not_enough(shell: str, bin_dir: Path) -> None:
    # The hook deploys into that resource group: Microsoft.Resources/deployments/write.
    run = run_hook(shell, "preprovision", bin_dir, FAKE_PERMISSIONS=json.dumps({"rg-apim": USER_ACCESS_ADMINISTRATOR}))
    assert run.returncode != 0
    assert f"APIM resource group ({APIM_GROUP}): Microsoft.Resources/deployments/write" in run.output
    assert "roleDefinitions/write" not in run.output  # that one User Access Administrator has


@pytest.mark.parametrize("shell", SHELLS)
def test_owner_and_contributor_plus_rbac_administrator_pass(shell: str, bin_dir: Path) -> None:
    contributor_and_rbac_admin = [
        [
            "*",
            "Microsoft.Authorization/*/Delete Microsoft.Authorization/*/Write Microsoft.Authorization/elevateAccess/Action",
        ],
        ["Microsoft.Authorization/roleAssignments/write Microsoft.Authorization/roleAssignments/delete */read", ""],
    ]
    owner = [["*", ""]]
    permissions = {"rg-security": contributor_and_rbac_admin, "rg-apim": owner, "/subscriptions/1111": owner}
    run = run_hook(shell, "preprovision", bin_dir, FAKE_PERMISSIONS=json.dumps(permissions))
    assert run.returncode == 0, run.output


@pytest.mark.parametrize("shell", SHELLS)
def test_not_actions_take_a_granted_action_away(shell: str, bin_dir: Path) -> None:
    # Contributor alone on the APIM group: '*' minus Microsoft.Authorization/*/Write.
    contributor = [["*", "Microsoft.Authorization/*/Delete Microsoft.Authorization/*/Write"]]
    run = run_hook(shell, "preprovision", bin_dir, FAKE_PERMISSIONS=json.dumps({"rg-apim": contributor}))
    assert run.returncode != 0
    assert f"APIM resource group ({APIM_GROUP}): Microsoft.Authorization/roleDefinitions/write" in run.output
    assert f"APIM resource group ({APIM_GROUP}): Microsoft.Authorization/roleAssignments/write" in run.output
    assert "Microsoft.Resources/deployments/write" not in run.output


@pytest.mark.parametrize("shell", SHELLS)
def test_private_mode_needs_approval_of_the_vault_private_endpoint(shell: str, bin_dir: Path) -> None:
    no_approval = [["*", "Microsoft.KeyVault/vaults/privateEndpointConnectionsApproval/action"]]
    permissions = json.dumps({"rg-security": no_approval})
    public = run_hook(shell, "preprovision", bin_dir, FAKE_PERMISSIONS=permissions)
    assert public.returncode == 0, public.output
    private = run_hook(shell, "preprovision", bin_dir, FAKE_PERMISSIONS=permissions, TRUSTSYNC_NETWORK_MODE="Private")
    assert private.returncode != 0
    assert "privateEndpointConnectionsApproval/action" in private.output
    manual = run_hook(
        shell,
        "preprovision",
        bin_dir,
        FAKE_PERMISSIONS=permissions,
        TRUSTSYNC_NETWORK_MODE="Private",
        TRUSTSYNC_KEYVAULT_PRIVATE_ENDPOINT_MANUAL_APPROVAL="true",
    )
    assert manual.returncode == 0, manual.output


@pytest.mark.parametrize("shell", SHELLS)
def test_unreadable_permissions_stop_the_hook_and_are_never_reported_granted(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "preprovision", bin_dir, FAKE_PERMISSIONS=json.dumps({"rg-apim": "<fail>"}))
    assert run.returncode != 0
    assert "could not read your permissions on APIM resource group" in run.output
    assert f"could not read your permissions on:\n  APIM resource group ({APIM_GROUP})" in run.output
    assert "granted" not in run.output.replace("known to be granted", "")
    assert "TRUSTSYNC_SKIP_PERMISSION_CHECK=true" in run.output
    # Nothing registered, nothing recorded.
    assert not run.calls_to("provider", "register")
    assert not run.calls_to("azd", "env", "set")


@pytest.mark.parametrize("shell", SHELLS)
def test_permission_check_can_be_skipped(shell: str, bin_dir: Path) -> None:
    run = run_hook(
        shell,
        "preprovision",
        bin_dir,
        FAKE_PERMISSIONS=json.dumps({"rg-apim": USER_ACCESS_ADMINISTRATOR}),
        TRUSTSYNC_SKIP_PERMISSION_CHECK="true",
    )
    assert run.returncode == 0, run.output
    assert not run.calls_to("rest")
    assert "permissions: NOT checked" in run.output
    assert "granted" not in run.output


# --- postprovision: the vault's one system topic ----------------------------------------------------


def topic_line(source: str, name: str, group: str, env_tag: str, identity: str = "SystemAssigned") -> str:
    return "\t".join([source, name, group, env_tag, identity])


@pytest.mark.parametrize("shell", SHELLS)
def test_postprovision_creates_a_topic_when_the_vault_has_none(shell: str, bin_dir: Path) -> None:
    other_vault = VAULT_ID.replace("kv-certs", "kv-other")
    run = run_hook(shell, "postprovision", bin_dir, FAKE_SYSTEM_TOPICS=topic_line(other_vault, "t", "rg", ""))
    assert run.returncode == 0, run.output
    (listing,) = run.calls_to("eventgrid", "system-topic", "list")
    assert listing[listing.index("--subscription") + 1] == ENV["TRUSTSYNC_KEYVAULT_SUBSCRIPTION_ID"]
    (deploy,) = run.calls_to("deployment", "sub", "create")
    assert run.parameters(deploy)["existingSystemTopicName"] == ""
    assert azd_env_sets(run) == {
        "TRUSTSYNC_SYSTEM_TOPIC_NAME": "evgt-trustsync-dev",
        "TRUSTSYNC_SYSTEM_TOPIC_RESOURCE_GROUP": "rg-security",
        "TRUSTSYNC_SYSTEM_TOPIC_OWNED": "true",
    }


@pytest.mark.parametrize("shell", SHELLS)
def test_postprovision_reuses_the_topic_another_deployment_created(shell: str, bin_dir: Path) -> None:
    # Another environment (another APIM service) watches the same vault and created its topic.
    # The id's case differs, as ARM ids often do.
    topics = topic_line(VAULT_ID.upper(), "evgt-trustsync-prod-apim1", "rg-security", "prod-apim1")
    run = run_hook(shell, "postprovision", bin_dir, FAKE_SYSTEM_TOPICS=topics)
    assert run.returncode == 0, run.output
    (deploy,) = run.calls_to("deployment", "sub", "create")
    parameters = run.parameters(deploy)
    assert parameters["existingSystemTopicName"] == "evgt-trustsync-prod-apim1"
    assert parameters["existingSystemTopicResourceGroup"] == "rg-security"
    assert azd_env_sets(run)["TRUSTSYNC_SYSTEM_TOPIC_OWNED"] == "false"
    assert azd_env_sets(run)["TRUSTSYNC_SYSTEM_TOPIC_NAME"] == "evgt-trustsync-prod-apim1"
    assert "never deleting it" in run.output


@pytest.mark.parametrize("shell", SHELLS)
def test_postprovision_reuses_a_topic_in_another_resource_group(shell: str, bin_dir: Path) -> None:
    topics = topic_line(VAULT_ID, "kv-certs-events", "rg-events", "", "SystemAssigned, UserAssigned")
    run = run_hook(shell, "postprovision", bin_dir, FAKE_SYSTEM_TOPICS=topics)
    assert run.returncode == 0, run.output
    (deploy,) = run.calls_to("deployment", "sub", "create")
    assert run.parameters(deploy)["existingSystemTopicResourceGroup"] == "rg-events"
    assert azd_env_sets(run)["TRUSTSYNC_SYSTEM_TOPIC_RESOURCE_GROUP"] == "rg-events"


@pytest.mark.parametrize("shell", SHELLS)
def test_postprovision_keeps_owning_the_topic_it_created(shell: str, bin_dir: Path) -> None:
    # Re-running azd up: the topic found is this environment's own, so it stays in the deployment
    # (and the predown hook may delete it).
    topics = topic_line(VAULT_ID, "evgt-trustsync-dev", "rg-security", "dev")
    run = run_hook(shell, "postprovision", bin_dir, FAKE_SYSTEM_TOPICS=topics)
    assert run.returncode == 0, run.output
    (deploy,) = run.calls_to("deployment", "sub", "create")
    assert run.parameters(deploy)["existingSystemTopicName"] == ""
    assert azd_env_sets(run)["TRUSTSYNC_SYSTEM_TOPIC_OWNED"] == "true"


@pytest.mark.parametrize("shell", SHELLS)
def test_postprovision_refuses_a_topic_without_a_system_identity(shell: str, bin_dir: Path) -> None:
    topics = topic_line(VAULT_ID, "kv-certs-events", "rg-security", "", "None")
    run = run_hook(shell, "postprovision", bin_dir, FAKE_SYSTEM_TOPICS=topics)
    assert run.returncode != 0
    assert "az eventgrid system-topic update --name kv-certs-events" in run.output
    assert not run.calls_to("deployment")


@pytest.mark.parametrize("shell", SHELLS)
def test_postprovision_uses_the_topic_named_by_the_operator(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "postprovision", bin_dir, TRUSTSYNC_EXISTING_SYSTEM_TOPIC="kv-certs-events")
    assert run.returncode == 0, run.output
    assert not run.calls_to("eventgrid", "system-topic", "list")
    (show,) = run.calls_to("eventgrid", "system-topic", "show")
    assert show[show.index("--resource-group") + 1] == "rg-security"
    (deploy,) = run.calls_to("deployment", "sub", "create")
    assert run.parameters(deploy)["existingSystemTopicName"] == "kv-certs-events"
    assert azd_env_sets(run)["TRUSTSYNC_SYSTEM_TOPIC_OWNED"] == "false"


# --- predown: a shared topic survives ----------------------------------------------------------------


@pytest.mark.parametrize("shell", SHELLS)
def test_predown_keeps_its_topic_while_other_deployments_use_it(shell: str, bin_dir: Path) -> None:
    run = run_hook(
        shell,
        "predown",
        bin_dir,
        FAKE_GROUP_RESOURCES=EVENT_SUBSCRIPTION,
        FAKE_SUB_RESOURCES=TOPIC,
        FAKE_TOPIC_SUBSCRIPTIONS="trustsync-prod-apim2",
    )
    assert run.returncode == 0, run.output
    deletions = [call for call in run.calls if "delete" in call and call[0] != "deployment"]
    assert deletions == [["resource", "delete", "--ids", EVENT_SUBSCRIPTION, "--output", "none"]]
    (listing,) = run.calls_to("eventgrid", "system-topic", "event-subscription", "list")
    assert listing[listing.index("--system-topic-name") + 1] == "evgt-trustsync-dev"
    assert listing[listing.index("--resource-group") + 1] == "rg-security"
    assert "kept system topic evgt-trustsync-dev: still used by event subscriptions trustsync-prod-apim2" in run.output


@pytest.mark.parametrize("shell", SHELLS)
def test_predown_never_deletes_a_topic_it_did_not_create(shell: str, bin_dir: Path) -> None:
    # A reused topic is only referenced by the access deployment: not among its resources.
    shared = f"{KV}/providers/Microsoft.EventGrid/systemTopics/evgt-trustsync-prod-apim1"
    run = run_hook(
        shell,
        "predown",
        bin_dir,
        TRUSTSYNC_SYSTEM_TOPIC_NAME="evgt-trustsync-prod-apim1",
        FAKE_GROUP_RESOURCES=f"{shared}/eventSubscriptions/trustsync-dev",
        FAKE_SUB_RESOURCES=KV_ASSIGNMENT,
    )
    assert run.returncode == 0, run.output
    deleted = [call[call.index("--ids") + 1] for call in run.calls_to("resource", "delete")]
    assert deleted == [f"{shared}/eventSubscriptions/trustsync-dev"]
    assert not run.calls_to("eventgrid", "system-topic", "event-subscription", "list")


# --- the PowerShell twins ------------------------------------------------------------------------------


def az_commands(text: str) -> set[str]:
    """The az and azd commands a script names outside comments: the words before the first option."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return {m[1] + m[2] for m in re.finditer(r"(?<![\w-])(azd?)((?: [a-z][a-z-]*)+)", code)}


def deployment_parameters(text: str) -> set[str]:
    return set(re.findall(r'"(\w+)=\$', text))


@pytest.mark.parametrize("hook", ["preprovision", "postprovision", "predeploy", "postdeploy", "predown"])
def test_powershell_hooks_mirror(hook: str) -> None:
    sh = (REPO / "scripts" / f"{hook}.sh").read_text() + (REPO / "scripts" / "common.sh").read_text()
    ps = (REPO / "scripts" / f"{hook}.ps1").read_text() + (REPO / "scripts" / "common.ps1").read_text()
    assert az_commands(sh) == az_commands(ps)
    assert deployment_parameters(sh) == deployment_parameters(ps)


# --- preprovision: every prerequisite is checked before anything is created --------------------------
# A first run has no main.bicep outputs yet: no AZURE_CLOUD, no generated names.
FIRST_RUN = {
    name: "<unset>"
    for name in ENV
    if name.startswith(("AZURE_FUNCTION_APP", "TRUSTSYNC_EVENT_", "TRUSTSYNC_ACCESS_", "TRUSTSYNC_NEW_"))
    or name in ("AZURE_CLOUD", "AZURE_RESOURCE_GROUP", "TRUSTSYNC_PRINCIPAL_ID", "TRUSTSYNC_ACTION_GROUP_ID")
}


@pytest.mark.parametrize("shell", SHELLS)
def test_first_run_refuses_an_az_on_another_cloud_than_the_region(shell: str, bin_dir: Path) -> None:
    # az on AzureCloud, the environment in an Azure China region, nothing provisioned yet.
    run = run_hook(shell, "preprovision", bin_dir, **FIRST_RUN, AZURE_LOCATION="chinanorth3")
    assert run.returncode != 0
    assert "az is set to cloud AzureCloud but chinanorth3 is a region of AzureChinaCloud" in run.output
    assert "az cloud set --name AzureChinaCloud" in run.output
    assert "granted" not in run.output
    assert not run.calls_to("rest")
    assert not run.calls_to("azd", "env", "set")


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("region", "cloud"),
    [("chinanorth3", "AzureChinaCloud"), ("usgovvirginia", "AzureUSGovernment"), ("westeurope", "AzureCloud")],
)
def test_first_run_passes_when_az_is_on_the_regions_cloud(shell: str, bin_dir: Path, region: str, cloud: str) -> None:
    locations = f"{region}\nsomewhere"
    run = run_hook(
        shell,
        "preprovision",
        bin_dir,
        **FIRST_RUN,
        AZURE_LOCATION=region,
        FAKE_AZ_CLOUD=cloud,
        FAKE_LOCATIONS=locations,
    )
    assert run.returncode == 0, run.output
    assert f"cloud: az is logged in to {cloud}, the cloud of {region} (checked)" in run.output
    assert f"region: {region} is a region of subscription" in run.output


@pytest.mark.parametrize("shell", SHELLS)
def test_a_region_the_subscription_does_not_have_is_refused(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "preprovision", bin_dir, AZURE_LOCATION="westeurop")
    assert run.returncode != 0
    assert "westeurop is not a region of subscription" in run.output
    assert not run.calls_to("azd", "env", "set")


@pytest.mark.parametrize("shell", SHELLS)
def test_missing_settings_are_named_with_the_command_that_sets_them(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "preprovision", bin_dir, TRUSTSYNC_KEYVAULT_NAME="<unset>")
    assert run.returncode != 0
    assert "azd env set TRUSTSYNC_KEYVAULT_NAME <value>" in run.output
    assert not run.calls_to("rest")


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("name", ["trustsync_prod", "prod.", "(blue).v2", "a_b.c(d)-e"])
def test_every_azd_environment_name_is_accepted_and_its_normalised_form_said(
    shell: str, bin_dir: Path, name: str
) -> None:
    run = run_hook(shell, "preprovision", bin_dir, AZURE_ENV_NAME=name)
    assert run.returncode == 0, run.output
    normalised = name.translate(str.maketrans("_.()", "----"))
    assert f"names use '{normalised}' followed by a short hash" in run.output


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("name", ["prod env", "prod/1", "prod!", "x" * 65])
def test_an_environment_name_azd_would_not_allow_is_refused_with_the_allowed_characters(
    shell: str, bin_dir: Path, name: str
) -> None:
    run = run_hook(shell, "preprovision", bin_dir, AZURE_ENV_NAME=name)
    assert run.returncode != 0
    assert "1-64 letters, digits, '-', '_', '.', '(' or ')'" in run.output
    assert run.calls == []  # refused before az (or azd) is asked anything


@pytest.mark.parametrize("shell", SHELLS)
def test_preprovision_refuses_a_vault_with_access_policies_before_anything_is_created(
    shell: str, bin_dir: Path
) -> None:
    run = run_hook(shell, "preprovision", bin_dir, FAKE_KV_RBAC="false")
    assert run.returncode != 0
    assert "Azure RBAC permission model" in run.output
    assert not run.calls_to("provider", "register")
    assert not run.calls_to("azd", "env", "set")
    (show,) = run.calls_to("keyvault", "show")
    assert show[show.index("--subscription") + 1] == ENV["TRUSTSYNC_KEYVAULT_SUBSCRIPTION_ID"]


@pytest.mark.parametrize("shell", SHELLS)
def test_preprovision_refuses_a_vault_it_cannot_find(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "preprovision", bin_dir, FAKE_KV_SHOW_FAILS="true")
    assert run.returncode != 0
    assert "cannot read Key Vault kv-certs in resource group rg-security" in run.output


@pytest.mark.parametrize("shell", SHELLS)
def test_each_named_certificate_is_checked_or_said_unchecked(shell: str, bin_dir: Path) -> None:
    outcomes = {
        "api-tls": "exists",
        "partner": "unreachable",
        "orders": "forbidden",
        "legacy": "firewall",
        "odd": "other",
    }
    run = run_hook(
        shell,
        "preprovision",
        bin_dir,
        TRUSTSYNC_CERTIFICATE_NAMES="api-tls, partner,orders,legacy,odd",
        FAKE_CERTIFICATES=json.dumps(outcomes),
    )
    assert run.returncode == 0, run.output
    assert "certificate api-tls: exists (checked)" in run.output
    assert (
        "certificate partner: could not check: the vault's data plane is not reachable from this machine" in run.output
    )
    assert "certificate legacy: could not check: the vault's data plane is not reachable" in run.output
    assert "certificate orders: could not check: you may not read the vault's certificates" in run.output
    assert "certificate odd: could not check: something unexpected" in run.output
    shows = run.calls_to("keyvault", "certificate", "show")
    assert [call[call.index("--name") + 1] for call in shows] == ["api-tls", "partner", "orders", "legacy", "odd"]
    assert all(call[call.index("--vault-name") + 1] == "kv-certs" for call in shows)


@pytest.mark.parametrize("shell", SHELLS)
def test_a_named_certificate_that_does_not_exist_stops_the_hook(shell: str, bin_dir: Path) -> None:
    run = run_hook(
        shell,
        "preprovision",
        bin_dir,
        TRUSTSYNC_CERTIFICATE_NAMES="api-tls,api-tsl",
        FAKE_CERTIFICATES=json.dumps({"api-tsl": "missing"}),
    )
    assert run.returncode != 0
    assert "Key Vault kv-certs has no certificate named: api-tsl" in run.output
    assert not run.calls_to("azd", "env", "set")


@pytest.mark.parametrize("shell", SHELLS)
def test_all_certificates_need_no_name_check(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "preprovision", bin_dir, TRUSTSYNC_CERTIFICATE_NAMES="*")
    assert run.returncode == 0, run.output
    assert not run.calls_to("keyvault", "certificate", "show")


@pytest.mark.parametrize("shell", SHELLS)
def test_a_malformed_certificate_name_is_refused(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "preprovision", bin_dir, TRUSTSYNC_CERTIFICATE_NAMES="api_tls")
    assert run.returncode != 0
    assert "'api_tls' is not a Key Vault certificate name" in run.output


@pytest.mark.parametrize("shell", SHELLS)
def test_permissions_are_checked_on_a_reused_topics_resource_group(shell: str, bin_dir: Path) -> None:
    topics = "\t".join([VAULT_ID, "kv-certs-events", "rg-events", "", "SystemAssigned"])
    no_event_grid = [["*", "Microsoft.EventGrid/*"]]
    run = run_hook(
        shell,
        "preprovision",
        bin_dir,
        FAKE_SYSTEM_TOPICS=topics,
        FAKE_PERMISSIONS=json.dumps({"rg-events": no_event_grid}),
    )
    assert run.returncode != 0
    topic_group = "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/rg-events"
    assert (
        f"system topic resource group ({topic_group}): Microsoft.EventGrid/systemTopics/eventSubscriptions/write"
        in (run.output)
    )
    urls = [call[call.index("--url") + 1] for call in run.calls_to("rest")]
    assert f"{topic_group}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01" in urls
    # The topic exists: the vault's resource group needs no systemTopics/write.
    run = run_hook(shell, "preprovision", bin_dir, FAKE_SYSTEM_TOPICS=topics)
    assert run.returncode == 0, run.output
    assert "system topic kv-certs-events is in resource group rg-events (checked)" in run.output


@pytest.mark.parametrize("shell", SHELLS)
def test_existing_private_dns_zones_need_join_permission(shell: str, bin_dir: Path) -> None:
    zone = "/subscriptions/9/resourceGroups/rg-hub/providers/Microsoft.Network/privateDnsZones/privatelink.table.core.windows.net"
    permissions = json.dumps({"rg-hub": [["*/read", ""]]})
    private = run_hook(
        shell,
        "preprovision",
        bin_dir,
        TRUSTSYNC_NETWORK_MODE="Private",
        TRUSTSYNC_TABLE_PRIVATE_DNS_ZONE_ID=zone,
        FAKE_PERMISSIONS=permissions,
    )
    assert private.returncode != 0
    assert f"private DNS zone ({zone}): Microsoft.Network/privateDnsZones/join/action" in private.output
    public = run_hook(
        shell, "preprovision", bin_dir, TRUSTSYNC_TABLE_PRIVATE_DNS_ZONE_ID=zone, FAKE_PERMISSIONS=permissions
    )
    assert public.returncode == 0, public.output


@pytest.mark.parametrize("shell", SHELLS)
def test_flex_private_mode_registers_microsoft_app(shell: str, bin_dir: Path) -> None:
    providers = json.dumps({"Microsoft.App": "NotRegistered"})
    run = run_hook(shell, "preprovision", bin_dir, TRUSTSYNC_NETWORK_MODE="Private", FAKE_PROVIDERS=providers)
    assert run.returncode == 0, run.output
    (register,) = run.calls_to("provider", "register")
    assert register[register.index("--namespace") + 1] == "Microsoft.App"
    assert register[register.index("--subscription") + 1] == ENV["AZURE_SUBSCRIPTION_ID"]
    assert "--wait" in register
    shown = {call[call.index("--namespace") + 1] for call in run.calls_to("provider", "show")}
    assert {"Microsoft.App", "Microsoft.Network", "Microsoft.Web", "Microsoft.EventGrid"} <= shown
    # Registering comes after every check: a refused deployment registers nothing.
    assert run.calls.index(register) > max(run.calls.index(c) for c in run.calls_to("rest"))


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(("mode", "plan"), [("Public", "FlexConsumption"), ("Private", "Dedicated")])
def test_microsoft_app_is_needed_only_by_flex_in_private_mode(shell: str, bin_dir: Path, mode: str, plan: str) -> None:
    run = run_hook(shell, "preprovision", bin_dir, TRUSTSYNC_NETWORK_MODE=mode, TRUSTSYNC_HOSTING_PLAN=plan)
    assert run.returncode == 0, run.output
    shown = {call[call.index("--namespace") + 1] for call in run.calls_to("provider", "show")}
    assert "Microsoft.App" not in shown
    assert ("Microsoft.Network" in shown) is (mode == "Private")
    (event_grid,) = [c for c in run.calls_to("provider", "show") if "Microsoft.EventGrid" in c]
    assert event_grid[event_grid.index("--subscription") + 1] == ENV["TRUSTSYNC_KEYVAULT_SUBSCRIPTION_ID"]


@pytest.mark.parametrize("shell", SHELLS)
def test_a_provider_that_cannot_be_registered_stops_the_hook(shell: str, bin_dir: Path) -> None:
    run = run_hook(
        shell,
        "preprovision",
        bin_dir,
        TRUSTSYNC_NETWORK_MODE="Private",
        FAKE_PROVIDERS=json.dumps({"Microsoft.App": "<fail>"}),
        FAKE_REGISTER_FAILS="true",
    )
    assert run.returncode != 0
    assert "could not register resource provider Microsoft.App" in run.output
    assert not run.calls_to("azd", "env", "set")


# --- private mode: azd deploy from a laptop ------------------------------------------------------------

SITE = ENV["AZURE_FUNCTION_APP_ID"]


def patches(run: Run) -> list[tuple[str, dict[str, Any]]]:
    return [
        (call[call.index("--url") + 1], json.loads(call[call.index("--body") + 1]))
        for call in run.calls_to("rest")
        if call[call.index("--method") + 1] == "patch"
    ]


@pytest.mark.parametrize("shell", SHELLS)
def test_predeploy_opens_only_the_scm_site_to_the_deployer_then_public_access(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "predeploy", bin_dir, TRUSTSYNC_NETWORK_MODE="Private", FAKE_PUBLIC_IP="203.0.113.7")
    assert run.returncode == 0, run.output
    (config_url, config), (site_url, site) = patches(run)
    assert config_url == f"{SITE}/config/web?api-version=2024-04-01"
    properties = config["properties"]
    assert [rule["ipAddress"] for rule in properties["scmIpSecurityRestrictions"]] == ["203.0.113.7/32"]
    assert {rule["action"] for rule in properties["scmIpSecurityRestrictions"]} == {"Allow"}
    assert properties["scmIpSecurityRestrictionsDefaultAction"] == "Deny"
    assert properties["scmIpSecurityRestrictionsUseMain"] is False
    # The app's own site keeps denying every public address.
    assert (properties["ipSecurityRestrictions"], properties["ipSecurityRestrictionsDefaultAction"]) == ([], "Deny")
    # Rules first, then public network access: never open without them.
    assert site_url == f"{SITE}?api-version=2024-04-01"
    assert site == {"properties": {"publicNetworkAccess": "Enabled"}}


@pytest.mark.parametrize("shell", SHELLS)
def test_predeploy_takes_the_deployers_addresses_when_given(shell: str, bin_dir: Path) -> None:
    run = run_hook(
        shell,
        "predeploy",
        bin_dir,
        TRUSTSYNC_NETWORK_MODE="Private",
        TRUSTSYNC_DEPLOYER_IP="198.51.100.0/28, 2001:db8::1",
    )
    assert run.returncode == 0, run.output
    assert not run.calls_to("curl")
    rules = patches(run)[0][1]["properties"]["scmIpSecurityRestrictions"]
    assert [rule["ipAddress"] for rule in rules] == ["198.51.100.0/28", "2001:db8::1/128"]
    assert len({rule["priority"] for rule in rules}) == 2


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("overrides", [{"TRUSTSYNC_DEPLOYER_IP": "203.0.113.7;rm -rf /"}, {"FAKE_PUBLIC_IP": "<fail>"}])
def test_predeploy_opens_nothing_without_a_valid_deployer_address(
    shell: str, bin_dir: Path, overrides: dict[str, str]
) -> None:
    run = run_hook(shell, "predeploy", bin_dir, TRUSTSYNC_NETWORK_MODE="Private", **overrides)
    assert run.returncode != 0
    assert "TRUSTSYNC_DEPLOYER_IP" in run.output
    assert not patches(run)


@pytest.mark.parametrize("shell", SHELLS)
def test_predeploy_does_nothing_in_public_mode(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "predeploy", bin_dir, TRUSTSYNC_NETWORK_MODE="Public", FAKE_PUBLIC_IP="203.0.113.7")
    assert run.returncode == 0, run.output
    assert not run.calls_to("rest")
    assert not run.calls_to("curl")


@pytest.mark.parametrize("shell", SHELLS)
def test_private_postdeploy_closes_public_access_before_anything_else(shell: str, bin_dir: Path) -> None:
    run = run_hook(
        shell,
        "postdeploy",
        bin_dir,
        TRUSTSYNC_NETWORK_MODE="Private",
        TRUSTSYNC_EVENT_QUEUE_NAME="keyvault-events",
        FAKE_FUNCTION_READY_AFTER="1",
    )
    assert run.returncode == 0, run.output
    (site_url, site), (config_url, config) = patches(run)
    assert (site_url, site) == (f"{SITE}?api-version=2024-04-01", {"properties": {"publicNetworkAccess": "Disabled"}})
    assert config_url == f"{SITE}/config/web?api-version=2024-04-01"
    assert config["properties"]["scmIpSecurityRestrictions"] == []
    first_patch = next(c for c in run.calls if c[:1] == ["rest"])
    assert run.calls.index(first_patch) < run.calls.index(run.calls_to("functionapp", "function", "show")[0])
    # A failure to close stops the hook: the event subscription waits for a closed site.
    failed = run_hook(shell, "postdeploy", bin_dir, TRUSTSYNC_NETWORK_MODE="Private", FAKE_PATCH_FAILS="true")
    assert failed.returncode != 0
    assert "azd hooks run postdeploy" in failed.output


@pytest.mark.parametrize("shell", SHELLS)
def test_public_postdeploy_leaves_network_access_alone(shell: str, bin_dir: Path) -> None:
    run = run_hook(shell, "postdeploy", bin_dir, TRUSTSYNC_NETWORK_MODE="Public")
    assert run.returncode == 0, run.output
    assert not patches(run)


# --- predown: what cannot be read is never reported removed --------------------------------------------


@pytest.mark.parametrize("shell", SHELLS)
def test_predown_treats_a_missing_deployment_as_nothing_to_remove(shell: str, bin_dir: Path) -> None:
    run = run_hook(
        shell,
        "predown",
        bin_dir,
        FAKE_GROUP_SHOW_ERROR="ERROR: (DeploymentNotFound) Deployment 'trustsync-eventgrid-dev' could not be found.",
        FAKE_SUB_RESOURCES=KV_ASSIGNMENT,
    )
    assert run.returncode == 0, run.output
    assert [call[call.index("--ids") + 1] for call in run.calls_to("role", "assignment", "delete")] == [KV_ASSIGNMENT]
    assert "access outside the app resource group removed" in run.output


@pytest.mark.parametrize("shell", SHELLS)
def test_predown_never_reports_removed_what_it_could_not_read(shell: str, bin_dir: Path) -> None:
    run = run_hook(
        shell,
        "predown",
        bin_dir,
        FAKE_GROUP_RESOURCES=EVENT_SUBSCRIPTION,
        FAKE_SUB_SHOW_ERROR="ERROR: (AuthorizationFailed) The client does not have authorization.",
    )
    assert run.returncode != 0
    assert "NOT removed" in run.output
    assert "trustsync-access-dev: (AuthorizationFailed) The client does not have authorization." in run.output
    assert "access outside the app resource group removed" not in run.output
    # What could be read is removed; the unread deployment keeps its record, which lists the rest.
    assert [call[call.index("--ids") + 1] for call in run.calls_to("resource", "delete")] == [EVENT_SUBSCRIPTION]
    assert not run.calls_to("deployment", "sub", "delete")


@pytest.mark.parametrize("shell", SHELLS)
def test_each_trust_bundle_is_checked_by_its_metadata_only(shell: str, bin_dir: Path) -> None:
    run = run_hook(
        shell,
        "preprovision",
        bin_dir,
        TRUSTSYNC_TRUST_BUNDLES="private-roots, partner-cas",
        FAKE_SECRETS=json.dumps({"partner-cas": "forbidden"}),
    )
    assert run.returncode == 0, run.output
    assert "trust bundle private-roots: exists (checked)" in run.output
    assert "trust bundle partner-cas: could not check: you may not list the vault's secrets" in run.output
    listed = run.calls_to("keyvault", "secret", "list-versions")
    assert [call[call.index("--name") + 1] for call in listed] == ["private-roots", "partner-cas"]
    assert not run.calls_to("keyvault", "secret", "show")  # never a value


@pytest.mark.parametrize("shell", SHELLS)
def test_a_missing_trust_bundle_stops_the_hook(shell: str, bin_dir: Path) -> None:
    run = run_hook(
        shell,
        "preprovision",
        bin_dir,
        TRUSTSYNC_TRUST_BUNDLES="private-roots,privat-roots",
        FAKE_SECRETS=json.dumps({"privat-roots": "missing"}),
    )
    assert run.returncode != 0
    assert "Key Vault kv-certs has no secret named: privat-roots (TRUSTSYNC_TRUST_BUNDLES)" in run.output
    assert not run.calls_to("azd", "env", "set")


@pytest.mark.parametrize(
    ("bundles", "certificates", "said"),
    [
        ("private_roots", "*", "'private_roots' is not a Key Vault secret name"),
        ("orders", "api-tls,Orders", "'orders' is also in TRUSTSYNC_CERTIFICATE_NAMES"),
    ],
)
@pytest.mark.parametrize("shell", SHELLS)
def test_a_malformed_or_doubly_named_trust_bundle_is_refused(
    shell: str, bin_dir: Path, bundles: str, certificates: str, said: str
) -> None:
    run = run_hook(
        shell, "preprovision", bin_dir, TRUSTSYNC_TRUST_BUNDLES=bundles, TRUSTSYNC_CERTIFICATE_NAMES=certificates
    )
    assert run.returncode != 0
    assert said in run.output
