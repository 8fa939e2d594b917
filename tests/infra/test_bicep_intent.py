"""The deployment's intent, asserted on the Bicep itself (parsed by pycep, as checkov does).

No Bicep compiler or Azure is reachable here, so these tests are the executable form of the
design: what is subscribed, who may do what where, that nothing holds a storage key, and that
every app setting the code reads is set.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from shared.settings import SETTINGS
from tests.infra.bicep_model import (
    INFRA,
    REPO,
    Evaluator,
    Resource,
    Template,
    Unevaluable,
    all_resources,
    bicep_files,
    is_call,
    is_operator,
    module_parameters,
    parse,
    parse_expression,
    template,
    templates,
)

ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
ROLE_DEFINITION = "Microsoft.Authorization/roleDefinitions"

# Built-in roles the deployment may grant, and why (the README's RBAC table lists the same).
ALLOWED_BUILT_IN_ROLES = {
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "21090545-7ca7-4776-b22c-e363652d74d2": "Key Vault Reader",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a": "Storage Queue Data Message Sender",
}
# Roles that must never appear: broad management roles and the ones the custom APIM role replaces.
FORBIDDEN_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "312a565d-c81f-4fd8-895a-4e21e48d571c": "API Management Service Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168": "Role Based Access Control Administrator",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "a4417e6f-fecd-4de8-b567-7b0420556985": "Key Vault Certificates Officer",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
}
APIM_ACTIONS = {
    "Microsoft.ApiManagement/service/read",
    "Microsoft.ApiManagement/service/certificates/read",
    "Microsoft.ApiManagement/service/certificates/write",
    "Microsoft.ApiManagement/service/certificates/delete",
    "Microsoft.ApiManagement/service/gateways/read",
    "Microsoft.ApiManagement/service/gateways/certificateAuthorities/read",
    "Microsoft.ApiManagement/service/gateways/certificateAuthorities/write",
    "Microsoft.ApiManagement/service/gateways/certificateAuthorities/delete",
}
CA_STORE_ACTION = "Microsoft.ApiManagement/service/write"  # only with CA_STORE=manage
# Only with BACKEND_TLS=manage; the adapter calls them through the client's pipeline at a preview
# api-version (no SDK operation), in shared/apim.py's backends() and set_backend_tls().
BACKEND_ACTIONS = {
    "Microsoft.ApiManagement/service/backends/read",
    "Microsoft.ApiManagement/service/backends/write",
}
# Only on a tier that offers workspaces (the service's sku at deployment, as shared/service_kind.py's
# WORKSPACE_TIERS); the adapter lists them through the client's pipeline in shared/apim.py's workspaces().
WORKSPACE_TIERS = {"premium", "basicv2", "standardv2", "premiumv2"}
WORKSPACE_ACTIONS = {
    "Microsoft.ApiManagement/service/workspaces/read",
    "Microsoft.ApiManagement/service/workspaceLinks/read",
}
WORKSPACE_BACKEND_ACTION = "Microsoft.ApiManagement/service/workspaces/backends/read"  # and BACKEND_TLS=manage
FUNCTIONS = ("on_keyvault_event", "on_keyvault_event_queue", "resync", "drift_audit")


def call_args(value: Any) -> list[Any]:
    assert is_call(value), value
    return list(value["function"]["parameters"].values())


def conditional(value: Any) -> dict[str, Any]:
    assert is_operator(value, "conditional"), value
    operands: dict[str, Any] = value["operator"]["operands"]
    return operands


def one(resources: list[Resource]) -> Resource:
    assert len(resources) == 1, [r.symbol for r in resources]
    return resources[0]


# The required parameters azd passes; names and ids are built from them.
DEPLOYMENT = {
    "environmentName": "dev",
    "location": "westeurope",
    "keyVaultName": "kv-certs",
    "keyVaultResourceGroupName": "rg-security",
    "apimResourceId": "/subscriptions/4444/resourceGroups/rg-apim/providers/Microsoft.ApiManagement/service/apim-prod",
}


def deployed(cloud: str = "AzureCloud", **parameters: Any) -> Evaluator:
    """main.bicep evaluated for these parameter values (defaults for the rest) in a cloud."""
    return Evaluator.for_template(template("main.bicep"), {**DEPLOYMENT, **parameters}, cloud)


def module_call(main: Evaluator, symbol: str) -> tuple[bool, dict[str, Any]]:
    """Whether main.bicep deploys a module with these parameters, and the values it passes."""
    module = template("main.bicep").modules[symbol]
    condition = True if module.condition is None else main.value(module.condition)
    return condition, module_parameters(main, module)


# --- the templates are valid for the tools that check them -------------------------------------


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_template_parses(path: Path) -> None:
    # checkov reports a template it cannot parse as a parsing error, not as a failed check,
    # so an unparsable file would silently escape every check. This test does not let it.
    document = parse(path)
    assert document.get("resources") or document.get("modules"), "template declares nothing"


def test_every_checkov_skip_is_inline_with_a_reason() -> None:
    skips = 0
    for path in bicep_files():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if "checkov:skip" not in line:
                continue
            skips += 1
            match = re.search(r"checkov:skip=(CKV2?_AZURE_\d+):\s*(.+)$", line)
            assert match, f"{path.name}:{number}: a skip needs an id and a written reason"
            assert len(match[2].split()) >= 8, f"{path.name}:{number}: the reason for {match[1]} is too thin"
    assert skips > 0


def test_modules_get_every_required_parameter() -> None:
    # What `bicep build` would report: a module called without one of its required parameters,
    # or with a parameter it does not declare.
    for caller in templates():
        for symbol, module in caller.modules.items():
            target = Template((caller.path.parent / module.path).resolve())
            declared = target.parameters
            required = target.required_parameters
            given = set(module.params)
            assert required <= given, f"{caller.name} module {symbol} misses {sorted(required - given)}"
            assert given <= set(declared), (
                f"{caller.name} module {symbol} passes unknown {sorted(given - set(declared))}"
            )


def test_parameters_file_matches_main() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    main = template("main.bicep")
    declared = main.parameters
    required = main.required_parameters
    assert required <= set(parameters), sorted(required - set(parameters))
    assert set(parameters) <= set(declared), sorted(set(parameters) - set(declared))


# --- every app setting the code reads is set -----------------------------------------------------


def site() -> Resource:
    return one(template("modules/function-app.bicep").resources("Microsoft.Web/sites"))


def app_settings() -> dict[str, Any]:
    """Every app setting the site can get (both plans, both identity types): name -> value."""
    function_app = template("modules/function-app.bicep")
    value = site().properties["siteConfig"]["appSettings"]
    assert value == "appSettings"
    return function_app.name_value_items(value)


def settings_of(variable: str) -> dict[str, Any]:
    return template("modules/function-app.bicep").name_value_items(variable)


@pytest.mark.parametrize("name", [s.name for s in SETTINGS])
def test_app_setting_read_by_the_code_is_set(name: str) -> None:
    assert name in app_settings()


def test_setting_values_come_from_the_deployment() -> None:
    main = template("main.bicep")
    settings = settings_of("trustSyncSettings")
    # AZURE_CLOUD is the cloud of the deployment itself: environment().name, AzureChinaCloud in China.
    assert settings["AZURE_CLOUD"] == "cloudName"
    cloud = main.variables["cloudName"]
    assert cloud == {"function": {"type": "environment", "property_name": "name"}}
    assert main.modules["functionApp"].params["cloudName"] == "cloudName"
    # AZURE_CLIENT_ID is the user-assigned identity's client id, empty with a system-assigned one.
    assert settings["AZURE_CLIENT_ID"] == "userAssignedIdentityClientId"
    client_id = conditional(main.modules["functionApp"].params["userAssignedIdentityClientId"])
    assert "clientId" in main.strings(client_id["true_value"])
    assert client_id["false_value"] == ""
    # KEYVAULT_URL uses the cloud's Key Vault DNS suffix, so it is right in every cloud.
    assert "environment().suffixes.keyvaultDns" in main.variables["keyVaultUrl"]


def test_flex_consumption_gets_no_settings_it_rejects() -> None:
    function_app = template("modules/function-app.bicep")
    always = set()
    for name in ("trustSyncSettings", "hostSettings", "userAssignedHostSettings"):
        always |= set(settings_of(name))
    rejected = {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"}
    assert not always & rejected
    # The Dedicated-plan settings are added only when the plan is not Flex Consumption.
    merged = call_args(function_app.variables["appSettings"])
    dedicated = [conditional(a) for a in merged if is_operator(a, "conditional") and "dedicatedOnlySettings" in str(a)]
    assert dedicated == [{"condition": "useFlex", "true_value": [], "false_value": "dedicatedOnlySettings"}]
    assert rejected - {"WEBSITE_RUN_FROM_PACKAGE"} <= set(settings_of("dedicatedOnlySettings"))


def test_flex_consumption_plan_runs_python_311() -> None:
    function_app = template("modules/function-app.bicep")
    plan = one(function_app.resources("Microsoft.Web/serverfarms"))
    assert conditional(plan.body["sku"])["true_value"] == {"name": "FC1", "tier": "FlexConsumption"}
    config = function_app.variables["flexFunctionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert conditional(site().properties["functionAppConfig"])["true_value"] == "flexFunctionAppConfig"


def test_hosting_plan_is_chosen_from_the_region_offer_not_the_cloud_name() -> None:
    # The preprovision hook resolves Auto from az functionapp list-flexconsumption-locations
    # (tests/infra/test_hooks.py); the template only takes its answer.
    main = template("main.bicep")
    assert "AzureChinaCloud" not in main.strings(main.variables["useFlex"])
    assert main.parameters["hostingPlan"]["decorators"][0]["argument"] == ["FlexConsumption", "Dedicated"]
    for plan, flex in (("FlexConsumption", True), ("Dedicated", False)):
        assert deployed(hostingPlan=plan).value("useFlex") is flex


def test_app_always_runs_as_a_managed_identity() -> None:
    # Backs the in-line checkov skips CKV_AZURE_16 / CKV_AZURE_71 (identity set through a variable).
    function_app = template("modules/function-app.bicep")
    assert site().body["identity"] == "identityConfig"
    identity = conditional(function_app.variables["identityConfig"])
    assert identity["true_value"]["type"] == "UserAssigned"
    assert identity["true_value"]["userAssignedIdentities"]
    assert identity["false_value"] == {"type": "SystemAssigned"}
    assert template("main.bicep").parameters["identityType"]["default"] == "UserAssigned"


# --- storage is reached with identities only -----------------------------------------------------


def test_storage_has_shared_key_access_disabled() -> None:
    storage = one(template("modules/storage.bicep").resources("Microsoft.Storage/storageAccounts"))
    properties = storage.properties
    assert properties["allowSharedKeyAccess"] is False
    assert properties["allowBlobPublicAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True
    containers = template("modules/storage.bicep").resources(
        "Microsoft.Storage/storageAccounts/blobServices/containers"
    )
    assert {c.properties["publicAccess"] for c in containers} == {"None"}


def test_host_storage_and_deployment_use_the_identity() -> None:
    function_app = template("modules/function-app.bicep")
    host = settings_of("hostSettings")
    assert host["AzureWebJobsStorage__credential"] == "managedidentity"
    assert "AzureWebJobsStorage__clientId" in settings_of("userAssignedHostSettings")
    assert "AzureWebJobsStorage" not in app_settings()  # no connection string
    assert "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING" not in app_settings()  # no Azure Files key
    authentication = conditional(function_app.variables["deploymentStorageAuthentication"])
    assert {authentication["true_value"]["type"], authentication["false_value"]["type"]} == {
        "UserAssignedIdentity",
        "SystemAssignedIdentity",
    }


def test_no_template_reads_a_key_or_builds_a_connection_string() -> None:
    for path in bicep_files():
        text = path.read_text()
        for secret_source in ("listKeys", "listAccountSas", "listServiceSas", "AccountKey=", "SharedAccessSignature"):
            assert secret_source not in text, f"{path.name} uses {secret_source}"


def test_telemetry_authentication_follows_the_cloud() -> None:
    # Entra-authenticated ingestion is documented for the public cloud only: elsewhere a component
    # that refuses local authentication would never receive a record.
    expected = {
        ("AzureCloud", "Auto"): True,
        ("AzureChinaCloud", "Auto"): False,
        ("AzureUSGovernment", "Auto"): False,
        ("AzureChinaCloud", "Entra"): True,
        ("AzureCloud", "ConnectionString"): False,
    }
    for (cloud, choice), entra in expected.items():
        main = deployed(cloud=cloud, telemetryAuthentication=choice)
        assert main.value("telemetryUsesEntra") is entra, (cloud, choice)
        modules = {s: module_parameters(main, m) for s, m in template("main.bicep").modules.items()}
        # Application Insights refuses connection-string-only ingestion exactly when the app uses Entra,
        assert modules["monitoring"]["disableLocalAuth"] is entra
        # the app sends the Entra authentication string only then,
        assert modules["functionApp"]["telemetryUsesEntra"] is entra
        # and gets the role that ingestion needs only then.
        assert modules["appRbac"]["grantTelemetryRole"] is entra
    monitoring = template("modules/monitoring.bicep")
    components = one(monitoring.resources("Microsoft.Insights/components"))
    assert components.properties["DisableLocalAuth"] == "disableLocalAuth"
    workspace = one(monitoring.resources("Microsoft.OperationalInsights/workspaces"))
    assert workspace.properties["features"]["disableLocalAuth"] is True  # workspace keys: never
    assert "APPLICATIONINSIGHTS_AUTHENTICATION_STRING" not in settings_of("hostSettings")
    auth = conditional(settings_of("entraTelemetrySettings")["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"])
    assert auth["false_value"] == "Authorization=AAD"
    assert auth["true_value"].endswith(";Authorization=AAD")
    merged = call_args(template("modules/function-app.bicep").variables["appSettings"])
    assert {"condition": "telemetryUsesEntra", "true_value": "entraTelemetrySettings", "false_value": []} in [
        conditional(a) for a in merged if is_operator(a, "conditional")
    ]
    assert template("modules/app-rbac.bicep").resource("telemetryRole").condition == "grantTelemetryRole"


# --- least privilege -------------------------------------------------------------------------------


def role_assignments() -> list[Resource]:
    return list(all_resources(ROLE_ASSIGNMENT))


def test_no_template_mentions_a_broad_role() -> None:
    for path in bicep_files():
        text = path.read_text().lower()
        for guid, role in FORBIDDEN_ROLES.items():
            assert guid not in text, f"{path.name} references {role}"


@pytest.mark.parametrize("assignment", role_assignments(), ids=lambda r: f"{r.template.name}:{r.symbol}")
def test_role_assignment_grants_only_an_allowed_role(assignment: Resource) -> None:
    role_definition = assignment.properties["roleDefinitionId"]
    custom_roles = {r.symbol for r in assignment.template.resources(ROLE_DEFINITION)}
    referenced = assignment.template.strings(role_definition)
    built_in = set()
    for text in referenced:
        # A property access such as roleIds.keyVaultReader resolves to that one entry of roleIds.
        variable = assignment.template.variables.get(text)
        if isinstance(variable, str):
            built_in.add(variable.lower())
    if referenced & custom_roles:
        assert not built_in
    else:
        accessed = _accessed_roles(assignment.template, role_definition)
        assert accessed, f"{assignment.symbol}: role definition not resolvable"
        for guid in accessed:
            assert guid in ALLOWED_BUILT_IN_ROLES, f"{assignment.symbol} grants {guid}"
            assert guid not in FORBIDDEN_ROLES


def _accessed_roles(owner: Template, role_definition: Any) -> set[str]:
    """GUIDs a roleDefinitionId expression names: a literal, a string variable or roleIds.<name>."""
    found: set[str] = set()
    for argument in call_args(role_definition)[1:]:
        argument = owner.deref(argument)
        if isinstance(argument, str):
            found |= owner.guids(argument)
        elif is_operator(argument, "property_accessor"):
            operands = argument["operator"]["operands"]
            table = owner.deref(operands["operand_1"])
            found |= owner.guids(table[operands["operand_2"]])
    return found


@pytest.mark.parametrize("assignment", role_assignments(), ids=lambda r: f"{r.template.name}:{r.symbol}")
def test_role_assignment_name_is_guid_of_scope_principal_role(assignment: Resource) -> None:
    name = assignment.body["name"]
    assert is_call(name, "guid")
    arguments = call_args(name)
    assert len(arguments) == 3
    text = [json.dumps(a) for a in arguments]
    assert ".id" in text[0] or '"id"' in text[0], "first argument is the scope's id"
    assert "principalId" in text[1] or "PrincipalId" in text[1]
    assert any(
        word in text[2]
        for word in ("roleIds", "storageBlobDataContributor", "storageQueueDataMessageSender", "gatewayCaOperatorId")
    )
    assert assignment.properties["principalType"] == "ServicePrincipal"


@pytest.mark.parametrize("assignment", role_assignments(), ids=lambda r: f"{r.template.name}:{r.symbol}")
def test_role_assignment_is_scoped_to_one_resource(assignment: Resource) -> None:
    # Never a resource group or subscription: each grant sits on the one resource it is for.
    scope: Any = assignment.body.get("scope")
    if is_operator(scope, "index_accessor"):  # certificateSecrets[i]
        scope = scope["operator"]["operands"]["operand_1"]
    assert isinstance(scope, str), f"{assignment.symbol} is scoped to {scope!r}"
    target = assignment.template.resource(scope)
    assert target.type != "Microsoft.Resources/resourceGroups"
    assert scope in json.dumps(assignment.body["name"]), "the name's guid() starts from this scope"


def test_custom_apim_role_holds_only_the_actions_the_app_calls() -> None:
    apim = template("access/apim.bicep")
    role = one(apim.resources(ROLE_DEFINITION))
    permissions = role.properties["permissions"]
    assert len(permissions) == 1
    # The base actions always; service/write (the CA store is a property of the service) only with CA_STORE=manage.
    assert permissions[0]["actions"] == {
        "function": {
            "type": "concat",
            "parameters": {
                "arg_1": "baseActions",
                "arg_2": {
                    "operator": {
                        "type": "conditional",
                        "operands": {
                            "condition": {
                                "operator": {
                                    "type": "equals",
                                    "operands": {"operand_1": "caStore", "operand_2": "manage"},
                                }
                            },
                            "true_value": "caStoreActions",
                            "false_value": [],
                        },
                    }
                },
                "arg_3": {
                    "operator": {
                        "type": "conditional",
                        "operands": {
                            "condition": {
                                "operator": {
                                    "type": "equals",
                                    "operands": {"operand_1": "backendTls", "operand_2": "manage"},
                                }
                            },
                            "true_value": "backendActions",
                            "false_value": [],
                        },
                    }
                },
                # Workspace reads only on a tier that offers workspaces; their backends only with BACKEND_TLS=manage too.
                "arg_4": {
                    "operator": {
                        "type": "conditional",
                        "operands": {"condition": "hasWorkspaces", "true_value": "workspaceActions", "false_value": []},
                    }
                },
                "arg_5": {
                    "operator": {
                        "type": "conditional",
                        "operands": {
                            "condition": {
                                "operator": {
                                    "type": "and",
                                    "operands": {
                                        "operand_1": "hasWorkspaces",
                                        "operand_2": {
                                            "operator": {
                                                "type": "equals",
                                                "operands": {"operand_1": "backendTls", "operand_2": "manage"},
                                            }
                                        },
                                    },
                                }
                            },
                            "true_value": "workspaceBackendActions",
                            "false_value": [],
                        },
                    }
                },
            },
        }
    }
    assert set(apim.variables["workspaceTiers"]) == WORKSPACE_TIERS
    assert set(apim.variables["workspaceActions"]) == WORKSPACE_ACTIONS
    assert apim.variables["workspaceBackendActions"] == [WORKSPACE_BACKEND_ACTION]
    assert set(apim.variables["baseActions"]) == APIM_ACTIONS
    assert apim.variables["caStoreActions"] == [CA_STORE_ACTION]
    assert apim.variables["backendActions"] == sorted(BACKEND_ACTIONS)
    assert apim.parameters["backendTls"]["default"] == "off"
    assert apim.parameters["caStore"]["default"] == "off"  # the broad permission is opt-in
    assert not any("*" in action for action in [*apim.variables["baseActions"], CA_STORE_ACTION, *BACKEND_ACTIONS])
    assert permissions[0]["notActions"] == []
    assert permissions[0]["dataActions"] == []
    assert role.properties["type"] == "CustomRole"
    (scope,) = role.properties["assignableScopes"]
    assert is_call(scope, "resource_group")
    assert scope["function"]["property_name"] == "id"
    assert set(scope["function"]["parameters"].values()) == {None}  # this resource group, no other
    assignment = one(apim.resources(ROLE_ASSIGNMENT))
    assert apim.resource(assignment.body["scope"]).type == "Microsoft.ApiManagement/service"
    assert assignment.properties["roleDefinitionId"] == "gatewayCaOperatorId"


# The ARM action each API Management SDK operation the adapter calls needs.
APIM_SDK_ACTIONS = {
    "api_management_service.get": "Microsoft.ApiManagement/service/read",
    "api_management_service.begin_update": CA_STORE_ACTION,
    "certificate.list_by_service": "Microsoft.ApiManagement/service/certificates/read",
    "certificate.get": "Microsoft.ApiManagement/service/certificates/read",
    "certificate.create_or_update": "Microsoft.ApiManagement/service/certificates/write",
    "certificate.delete": "Microsoft.ApiManagement/service/certificates/delete",
    "gateway.list_by_service": "Microsoft.ApiManagement/service/gateways/read",
    "gateway.get": "Microsoft.ApiManagement/service/gateways/read",
    "gateway_certificate_authority.list_by_service": "Microsoft.ApiManagement/service/gateways/certificateAuthorities/read",
    "gateway_certificate_authority.get": "Microsoft.ApiManagement/service/gateways/certificateAuthorities/read",
    "gateway_certificate_authority.create_or_update": "Microsoft.ApiManagement/service/gateways/certificateAuthorities/write",
    "gateway_certificate_authority.delete": "Microsoft.ApiManagement/service/gateways/certificateAuthorities/delete",
}


def test_custom_apim_role_is_exactly_what_the_adapter_calls() -> None:
    # Every SDK operation shared/apim.py calls is allowed, and every action but service/read is
    # used by one (service/read: the service's tier and CA store are read from it).
    calls = set(re.findall(r"self\._client\.(\w+\.\w+)\(", (REPO / "shared" / "apim.py").read_text()))
    assert calls, "the adapter's SDK calls"
    unknown = calls - set(APIM_SDK_ACTIONS)
    assert not unknown, f"map these SDK operations to their ARM actions: {sorted(unknown)}"
    needed = {APIM_SDK_ACTIONS[call] for call in calls}
    assert needed | {"Microsoft.ApiManagement/service/read"} == APIM_ACTIONS | {CA_STORE_ACTION}


def test_key_vault_roles_are_secrets_user_and_reader_scoped_narrowly() -> None:
    keyvault = template("access/keyvault.bicep")
    roles = keyvault.variables["roleIds"]
    assert {ALLOWED_BUILT_IN_ROLES[g] for g in roles.values()} == {"Key Vault Secrets User", "Key Vault Reader"}
    scopes = {}
    for assignment in keyvault.resources(ROLE_ASSIGNMENT):
        scope = assignment.body["scope"]
        if is_operator(scope, "index_accessor"):  # certificateSecrets[i] / certificates[i] / bundleSecrets[i]
            scope = scope["operator"]["operands"]["operand_1"]
        scopes[assignment.symbol] = (keyvault.resource(scope).type, assignment.looped, json.dumps(assignment.condition))
    assert scopes == {
        "vaultSecretsUser": (
            "Microsoft.KeyVault/vaults",
            False,
            '{"operator": {"type": "not", "operands": {"bool_value": "perObject"}}}',
        ),
        "vaultReader": (
            "Microsoft.KeyVault/vaults",
            False,
            '{"operator": {"type": "not", "operands": {"bool_value": "perObject"}}}',
        ),
        "secretSecretsUser": ("Microsoft.KeyVault/vaults/secrets", True, '"perObject"'),
        "certificateReader": ("Microsoft.KeyVault/vaults/certificates", True, '"perObject"'),
        # Each trust bundle secret alone; never a role on the other plain secrets.
        "bundleSecretsUser": ("Microsoft.KeyVault/vaults/secrets", True, '"perObject"'),
    }
    assert "trustBundles" in keyvault.parameters


def test_main_deploys_only_into_the_resource_group_it_creates() -> None:
    # `azd down` deletes every resource group named in the azd deployment's output resources.
    # Anything main.bicep put into the Key Vault or APIM resource group would get that whole
    # resource group deleted; those resources belong to the hook deployments instead.
    main = template("main.bicep")
    assert [r.type for r in main.resources()] == ["Microsoft.Resources/resourceGroups"]
    for symbol, module in main.modules.items():
        assert module.body["scope"] == "rg", f"module {symbol} deploys outside the app resource group"


# --- Event Grid -------------------------------------------------------------------------------------


def event_subscription() -> tuple[Template, Resource]:
    eventgrid = template("eventgrid.bicep")
    return eventgrid, one(eventgrid.resources("Microsoft.EventGrid/systemTopics/eventSubscriptions"))


def test_event_subscription_delivers_the_certificate_events_the_app_handles() -> None:
    eventgrid, subscription = event_subscription()
    types = eventgrid.deref(subscription.properties["filter"]["includedEventTypes"])
    assert types == [
        "Microsoft.KeyVault.CertificateNewVersionCreated",
        "Microsoft.KeyVault.CertificateNearExpiry",
        "Microsoft.KeyVault.CertificateExpired",
        # Trust bundles' new versions: TRUST_BUNDLES, the app setting, picks the secrets (one type-only filter).
        "Microsoft.KeyVault.SecretNewVersionCreated",
    ]


def test_certificate_names_have_one_source_of_truth() -> None:
    # CERTIFICATE_NAMES (the app setting) alone chooses certificates: the subscription filters by
    # event type only, so changing the setting later cannot leave names without events, and a long
    # list cannot hit Event Grid's limit on advanced filter values.
    eventgrid, subscription = event_subscription()
    assert set(subscription.properties["filter"]) == {"includedEventTypes"}
    assert "certificateNames" not in eventgrid.parameters
    assert "CERTIFICATE_NAMES" in app_settings()


APP_ID = "/subscriptions/1/resourceGroups/rg-dev/providers/Microsoft.Web/sites/func-trustsync-x"
DEAD_LETTER_ID = "/subscriptions/1/resourceGroups/rg-dev/providers/Microsoft.Storage/storageAccounts/sttsdlx"


def subscription_delivery(event_queue_name: str) -> tuple[Any, Any]:
    """(destination, deliveryWithResourceIdentity) of the event subscription the hook deploys with this queue name."""
    eventgrid, subscription = event_subscription()
    values = {"functionAppId": APP_ID, "deadLetterStorageAccountId": DEAD_LETTER_ID, "eventQueueName": event_queue_name}
    evaluator = Evaluator.for_template(eventgrid, values)
    return evaluator.value(subscription.properties["destination"]), evaluator.value(
        subscription.properties["deliveryWithResourceIdentity"]
    )


def test_event_subscription_targets_on_keyvault_event_one_event_at_a_time() -> None:
    # Public network mode: TRUSTSYNC_EVENT_QUEUE_NAME is empty and the hook passes it as is.
    assert module_output(deployed(networkMode="Public"), "TRUSTSYNC_EVENT_QUEUE_NAME") == ""
    eventgrid = template("eventgrid.bicep")
    assert eventgrid.parameters["eventQueueName"]["default"] == ""
    destination, with_identity = subscription_delivery("")
    assert destination == {
        "endpointType": "AzureFunction",
        "properties": {
            "resourceId": f"{APP_ID}/functions/on_keyvault_event",
            "maxEventsPerBatch": 1,
            "preferredBatchSizeInKilobytes": 64,
        },
    }
    assert with_identity is None


def test_private_mode_event_subscription_writes_to_the_event_queue_with_the_topic_identity() -> None:
    queue = module_output(deployed(networkMode="Private"), "TRUSTSYNC_EVENT_QUEUE_NAME")
    assert queue == "keyvault-events"
    destination, with_identity = subscription_delivery(queue)
    assert destination is None  # nothing is pushed to the app's endpoint
    assert with_identity == {
        "identity": {"type": "SystemAssigned"},
        "destination": {
            "endpointType": "StorageQueue",
            "properties": {
                "resourceId": DEAD_LETTER_ID,
                "queueName": "keyvault-events",
            },
        },
    }
    _, subscription = event_subscription()
    assert subscription.properties["eventDeliverySchema"] == "EventGridSchema"


def test_hooks_pass_the_event_queue_to_the_subscription_and_the_topic_identity_role() -> None:
    for script in ("postdeploy.sh", "postdeploy.ps1", "postprovision.sh", "postprovision.ps1"):
        text = (REPO / "scripts" / script).read_text()
        assert "eventQueueName=" in text, script
        assert "TRUSTSYNC_EVENT_QUEUE_NAME" in text, script
    for script in ("postdeploy.sh", "postdeploy.ps1"):
        assert "on_keyvault_event_queue" in (REPO / "scripts" / script).read_text(), script
    assert template("access.bicep").modules["deadLetterAccess"].params["eventQueueName"] == "eventQueueName"


def module_output(main: Evaluator, name: str) -> Any:
    return main.value(template("main.bicep").document["outputs"][name]["value"])


def test_event_subscription_retries_then_dead_letters_with_an_identity() -> None:
    eventgrid, subscription = event_subscription()
    retry = subscription.properties["retryPolicy"]
    assert eventgrid.parameters[retry["maxDeliveryAttempts"]]["default"] == 30
    assert eventgrid.parameters[retry["eventTimeToLiveInMinutes"]]["default"] == 1440
    dead_letter = subscription.properties["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"] == {"type": "SystemAssigned"}
    destination = dead_letter["deadLetterDestination"]
    assert destination["endpointType"] == "StorageBlob"
    assert set(destination["properties"]) == {"resourceId", "blobContainerName"}
    assert "deadLetterDestination" not in subscription.properties  # no key-based dead-lettering


def test_system_topic_identity_may_write_only_the_dead_letter_container_and_the_event_queue() -> None:
    topic = template("access/keyvault.bicep").resource("systemTopic")
    assert topic.body["identity"] == {"type": "SystemAssigned"}
    assert topic.properties["topicType"] == "Microsoft.KeyVault.vaults"
    deadletter = template("access/deadletter.bicep")
    assignments = {a.symbol: a for a in deadletter.resources(ROLE_ASSIGNMENT)}
    assert set(assignments) == {"deadLetterWriter", "eventQueueSender"}
    writer, sender = assignments["deadLetterWriter"], assignments["eventQueueSender"]
    assert deadletter.resource(writer.body["scope"]).type == "Microsoft.Storage/storageAccounts/blobServices/containers"
    assert ALLOWED_BUILT_IN_ROLES[deadletter.variables["storageBlobDataContributor"]] == "Storage Blob Data Contributor"
    # Sender on the event queue alone, and only when Event Grid delivers there (private mode).
    queue = deadletter.resource(sender.body["scope"])
    assert queue.type == "Microsoft.Storage/storageAccounts/queueServices/queues"
    assert ALLOWED_BUILT_IN_ROLES[deadletter.variables["storageQueueDataMessageSender"]] == (
        "Storage Queue Data Message Sender"
    )
    assert sender.condition == "deliversToQueue"
    for queue_name, delivers in (("", False), ("keyvault-events", True)):
        evaluator = Evaluator.for_template(deadletter, {"eventQueueName": queue_name})
        assert evaluator.value("deliversToQueue") is delivers
        if delivers:
            assert evaluator.value(queue.body["name"]) == "keyvault-events"


def test_the_event_queue_and_its_poison_queue_live_in_the_dead_letter_account_in_both_modes() -> None:
    storage = template("modules/storage.bicep")
    for mode in ("Public", "Private"):
        main = deployed(networkMode=mode)
        assert module_call(main, "deadLetterStorage")[1]["queueName"] == "keyvault-events"
        assert "queueName" not in module_call(main, "storage")[1]  # host storage holds no queue
        assert module_call(main, "functionApp")[1]["eventQueueName"] == "keyvault-events"
        assert module_call(main, "appRbac")[1]["eventQueueName"] == "keyvault-events"
    queues = one(storage.resources("Microsoft.Storage/storageAccounts/queueServices/queues"))
    assert Evaluator.for_template(storage, {"queueName": "keyvault-events"}).value("queueNames") == [
        "keyvault-events",
        "keyvault-events-poison",
    ]
    assert Evaluator.for_template(storage, {"queueName": ""}).value("queueNames") == []
    assert queues.body["parent"] == "queueService"
    main_template = template("main.bicep")
    assert "deadLetterStorage" in json.dumps(main_template.modules["functionApp"].params["eventQueueServiceUri"])
    assert "deadLetterStorage" in json.dumps(main_template.modules["appRbac"].params["eventQueueStorageAccountName"])


def test_the_app_identity_may_update_and_delete_messages_on_the_event_queue_only() -> None:
    # The host's Update Message (a failed run puts its message back, a long run renews it) needs
    # queues/messages/write, which Storage Queue Data Reader and Message Processor lack.
    rbac = template("modules/app-rbac.bicep")
    queue_roles: dict[str, set[str]] = {}
    for assignment in rbac.resources(ROLE_ASSIGNMENT):
        target = rbac.resource(assignment.body["scope"])
        if target.type != "Microsoft.Storage/storageAccounts/queueServices/queues":
            continue
        assert assignment.properties["principalId"] == "principalId"
        roles = {
            ALLOWED_BUILT_IN_ROLES[guid] for guid in _accessed_roles(rbac, assignment.properties["roleDefinitionId"])
        }
        queue_roles.setdefault(target.symbol, set()).update(roles)
    assert queue_roles == {
        "eventQueue": {"Storage Queue Data Contributor"},
        "poisonQueue": {"Storage Queue Data Contributor"},
    }
    assert rbac.resource("eventQueue").body["name"] == "eventQueueName"
    assert rbac.resource("poisonQueue").body["name"] == "${eventQueueName}-poison"


def test_the_host_reaches_its_tables_with_the_app_identity() -> None:
    # The host writes diagnostic events to Table storage of AzureWebJobsStorage: the connection
    # needs the table endpoint and the identity a table role, on the host account only.
    settings = app_settings()
    table_uri = json.dumps(settings["AzureWebJobsStorage__tableServiceUri"])
    assert '"operand_1": "storage"' in table_uri
    assert '"operand_1": "primaryEndpoints", "operand_2": "table"' in table_uri
    rbac = template("modules/app-rbac.bicep")
    tables = [
        a
        for a in rbac.resources(ROLE_ASSIGNMENT)
        if "Storage Table Data Contributor"
        in {ALLOWED_BUILT_IN_ROLES[g] for g in _accessed_roles(rbac, a.properties["roleDefinitionId"])}
    ]
    assert [rbac.resource(a.body["scope"]).body["name"] for a in tables] == ["storageAccountName"]
    assert (
        template("main.bicep").modules["appRbac"].params["storageAccountName"]
        == template("main.bicep").modules["functionApp"].params["storageAccountName"]
    )


def test_the_queue_trigger_connects_to_the_event_queue_with_the_app_identity() -> None:
    code = (REPO / "function_app.py").read_text()
    binding = re.search(r'queue_trigger\(arg_name="message", queue_name="%(\w+)%", connection="(\w+)"\)', code)
    assert binding, "on_keyvault_event_queue's queue trigger binding"
    queue_setting, connection = binding[1], binding[2]
    settings = app_settings()
    assert settings[queue_setting] == "eventQueueName"
    assert settings[f"{connection}__queueServiceUri"] == "eventQueueServiceUri"
    assert settings[f"{connection}__credential"] == "managedidentity"
    assert settings_of("userAssignedHostSettings")[f"{connection}__clientId"] == "userAssignedIdentityClientId"
    # No connection string or key for the queue anywhere.
    assert not any(name.startswith(connection) and "connectionString" in name for name in settings)


# --- alerting -------------------------------------------------------------------------------------------


def alert_query(symbol: str) -> str:
    alerts = template("modules/alerts.bicep")
    rule = alerts.resource(symbol)
    assert rule.type == "Microsoft.Insights/scheduledQueryRules"
    query = alerts.deref(rule.properties["criteria"]["allOf"][0]["query"])
    text = call_args(query)[0]
    assert isinstance(text, str)
    return text


def test_alert_on_audit_records_that_are_not_in_sync() -> None:
    query = alert_query("driftAlert")
    assert 'startswith "TRUSTSYNC_AUDIT "' in query
    assert 'status !in ("in-sync", "expiring")' in query


def test_alert_when_the_latest_audit_reports_an_expiring_certificate() -> None:
    query = alert_query("expiringAlert")
    assert "arg_max(TimeGenerated, Message)" in query  # the last record only
    assert 'status == "expiring"' in query


def test_alert_on_function_failures() -> None:
    query = alert_query("failureAlert")
    assert "Success == false" in query
    for function in FUNCTIONS:
        assert f'"{function}"' in query


def test_alert_email_is_optional() -> None:
    alerts = template("modules/alerts.bicep")
    assert alerts.parameters["alertEmail"]
    group = alerts.resource("actionGroup")
    assert group.condition == "hasEmail"


def test_the_workbook_is_deployed_with_the_app_over_its_workspace() -> None:
    workbook = template("modules/workbook.bicep")
    (resource,) = workbook.resources("Microsoft.Insights/workbooks")
    assert resource.body["kind"] == "shared"
    assert resource.properties["category"] == "workbook"
    assert resource.properties["sourceId"] == "workspaceId"
    assert '"load_text_content"' in json.dumps(workbook.variables["content"])  # loadTextContent(workbook.json)
    assert "workbook.json" in json.dumps(workbook.variables["content"])
    main = template("main.bicep")
    passed = main.modules["workbook"].body["params"]
    assert "monitoring" in json.dumps(passed["workspaceId"])
    assert (passed["keyVaultId"], passed["eventSubscriptionName"]) == ("keyVaultId", "eventSubscriptionName")


def test_function_names_match_the_code() -> None:
    code = REPO / "function_app.py"
    if not code.exists():
        pytest.skip("function_app.py is not in the tree yet")
    text = code.read_text()
    for function in FUNCTIONS:
        assert re.search(rf"\bdef {function}\(", text), f"function_app.py defines no {function}"
    assert "%AUDIT_SCHEDULE%" in text


# --- azd -----------------------------------------------------------------------------------------------


def test_azure_yaml_wires_the_hooks_and_the_service() -> None:
    yaml: Any = importlib.import_module("yaml")
    config = yaml.safe_load((REPO / "azure.yaml").read_text())
    assert (REPO / config["infra"]["path"] / f"{config['infra']['module']}.bicep").exists()
    service = config["services"]["trustsync"]
    assert (service["host"], service["language"], service["project"]) == ("function", "python", ".")
    for hook in ("preprovision", "postprovision", "predeploy", "postdeploy", "predown"):
        for platform, shell in (("posix", "sh"), ("windows", "pwsh")):
            entry = config["hooks"][hook][platform]
            assert entry["shell"] == shell
            assert (REPO / entry["run"]).exists(), entry["run"]
            assert entry["continueOnError"] is False
    # azd finds the Function App by this tag.
    tags = site().body["tags"]
    assert call_args(tags)[1] == {"'azd-service-name'": "trustsync"}


def test_hooks_deploy_the_templates_that_exist() -> None:
    for script in sorted((REPO / "scripts").glob("post*.*")):
        for reference in re.findall(r"infra/[\w/.-]+\.bicep", script.read_text()):
            assert (REPO / reference).exists(), f"{script.name} deploys missing {reference}"


# --- Flex Consumption accepts the site ------------------------------------------------------------------

# siteConfig properties Flex Consumption rejects (ARM error 51021), even when null.
FLEX_REJECTED_SITE_CONFIG = {
    "ftpsState",
    "use32BitWorkerProcess",
    "netFrameworkVersion",
    "functionsRuntimeScaleMonitoringEnabled",
    "linuxFxVersion",
    "windowsFxVersion",
    "alwaysOn",
}


def test_flex_site_sends_no_site_config_property_flex_rejects() -> None:
    site_config = site().properties["siteConfig"]
    assert isinstance(site_config, dict), "siteConfig must be one literal object, the same for both plans"
    assert not {key.lower() for key in site_config} & {key.lower() for key in FLEX_REJECTED_SITE_CONFIG}
    # What only the Dedicated plan takes is a module that Flex Consumption never gets.
    function_app = template("modules/function-app.bicep")
    dedicated = function_app.modules["dedicatedSiteConfig"]
    assert dedicated.condition == {"operator": {"type": "not", "operands": {"bool_value": "useFlex"}}}
    web = one(template("modules/dedicated-site-config.bicep").resources("Microsoft.Web/sites/config"))
    assert web.body["name"] == "web"
    assert web.properties == {"linuxFxVersion": "Python|3.11", "alwaysOn": True, "ftpsState": "Disabled"}


def test_ftp_and_basic_publishing_are_off_on_both_plans() -> None:
    # Backs the in-line skip of CKV_AZURE_78: FTP is off without siteConfig.ftpsState.
    policies = template("modules/function-app.bicep").resources(
        "Microsoft.Web/sites/basicPublishingCredentialsPolicies"
    )
    assert {(p.body["name"], p.properties["allow"], p.condition) for p in policies} == {
        ("ftp", False, None),
        ("scm", False, None),
    }


# --- app settings the app reads ---------------------------------------------------------------------------


def test_new_settings_have_their_defaults() -> None:
    settings = settings_of("trustSyncSettings")
    for name in ("ROTATION_GRACE", "EXPIRY_WARNING_DAYS", "RUN_TIME_BUDGET", "AUDIT_REMEDIATE"):
        assert name in settings
    main = template("main.bicep")
    remediate = main.parameters["auditRemediate"]
    assert remediate["type"] == "string"
    assert remediate["decorators"][0]["argument"] == ["false", "additions", "true"]
    assert remediate["default"] == "additions"
    values = module_call(deployed(), "functionApp")[1]
    assert (values["rotationGrace"], values["expiryWarningDays"], values["auditRemediate"]) == ("24h", 30, "additions")


def test_run_time_budget_is_the_function_timeout_less_a_margin() -> None:
    host = json.loads((REPO / "host.json").read_text())
    hours, minutes, seconds = (int(part) for part in host["functionTimeout"].split(":"))
    timeout = hours * 3600 + minutes * 60 + seconds
    main = template("main.bicep")
    assert main.parameters["functionTimeoutSeconds"]["default"] == timeout, "keep it equal to host.json"
    assert module_call(deployed(), "functionApp")[1]["runTimeBudget"] == f"{timeout - 60}s" == "540s"
    assert module_call(deployed(runTimeMarginSeconds=120), "functionApp")[1]["runTimeBudget"] == f"{timeout - 120}s"


# --- network mode -----------------------------------------------------------------------------------------

PRIVATE_ONLY_MODULES = {
    "network",
    "storagePrivateEndpoint",
    "keyVaultPrivateEndpoint",
    "queuePrivateEndpoint",
    "tablePrivateEndpoint",
    "sitePrivateEndpoint",
}


@pytest.mark.parametrize("plan", ["FlexConsumption", "Dedicated"])
def test_public_mode_deploys_no_network(plan: str) -> None:
    main = deployed(networkMode="Public", hostingPlan=plan)
    for symbol in PRIVATE_ONLY_MODULES:
        assert module_call(main, symbol)[0] is False, symbol
    storage = module_call(main, "storage")[1]
    assert (storage["publicNetworkAccess"], storage["networkDefaultAction"]) == ("Enabled", "Allow")
    app = module_call(main, "functionApp")[1]
    assert app["publicNetworkAccess"] == "Enabled"


@pytest.mark.parametrize("plan", ["FlexConsumption", "Dedicated"])
def test_private_mode_reaches_storage_and_key_vault_through_private_endpoints(plan: str) -> None:
    main = deployed(networkMode="Private", hostingPlan=plan)
    for symbol in PRIVATE_ONLY_MODULES:
        assert module_call(main, symbol)[0] is True, symbol
    # Host storage refuses public traffic; the app reaches it through its blob private endpoint.
    storage = module_call(main, "storage")[1]
    assert (storage["publicNetworkAccess"], storage["networkDefaultAction"]) == ("Disabled", "Deny")
    main_template = template("main.bicep")
    blob = main_template.modules["storagePrivateEndpoint"].params
    assert blob["targetId"] == {
        "operator": {
            "type": "property_accessor",
            "operands": {
                "operand_1": "storage",
                "operand_2": {
                    "operator": {"type": "property_accessor", "operands": {"operand_1": "outputs", "operand_2": "id"}}
                },
            },
        }
    }
    assert module_call(main, "storagePrivateEndpoint")[1]["groupId"] == "blob"
    # The existing vault, by id, in its own subscription and resource group.
    vault = module_call(main, "keyVaultPrivateEndpoint")[1]
    assert vault["groupId"] == "vault"
    assert vault["targetId"].endswith("/resourceGroups/rg-security/providers/Microsoft.KeyVault/vaults/kv-certs")
    assert module_call(deployed(networkMode="Private", keyVaultSubscriptionId="5555"), "keyVaultPrivateEndpoint")[1][
        "targetId"
    ].startswith("/subscriptions/5555/")
    # Both endpoints register in the private DNS zones of the network module.
    for symbol, zone in (
        ("storagePrivateEndpoint", "blobPrivateDnsZoneId"),
        ("keyVaultPrivateEndpoint", "keyVaultPrivateDnsZoneId"),
    ):
        assert zone in json.dumps(main_template.modules[symbol].params["privateDnsZoneId"])
    endpoint = template("modules/private-endpoint.bicep")
    group = one(endpoint.resources("Microsoft.Network/privateEndpoints/privateDnsZoneGroups"))
    assert group.properties["privateDnsZoneConfigs"][0]["properties"]["privateDnsZoneId"] == "privateDnsZoneId"
    # The app joins the network: VNet integration into the subnet delegated to its plan.
    network = module_call(main, "network")[1]
    delegation = {"FlexConsumption": "Microsoft.App/environments", "Dedicated": "Microsoft.Web/serverFarms"}[plan]
    assert network["appSubnetDelegation"] == delegation
    assert "appSubnetId" in json.dumps(main_template.modules["functionApp"].params["virtualNetworkSubnetId"])
    assert conditional(site().properties["virtualNetworkSubnetId"]) == {
        "condition": "useVnet",
        "true_value": "virtualNetworkSubnetId",
        "false_value": None,
    }
    # The event queue (dead-letter account) and the app itself, through private endpoints too.
    queue = module_call(main, "queuePrivateEndpoint")[1]
    assert queue["groupId"] == "queue"
    assert "deadLetterStorage" in json.dumps(main_template.modules["queuePrivateEndpoint"].params["targetId"])
    assert "queuePrivateDnsZoneId" in json.dumps(
        main_template.modules["queuePrivateEndpoint"].params["privateDnsZoneId"]
    )
    # Host storage tables (the host's diagnostic events), in the host account.
    table = module_call(main, "tablePrivateEndpoint")[1]
    assert table["groupId"] == "table"
    assert main_template.modules["tablePrivateEndpoint"].params["targetId"] == blob["targetId"]
    assert "tablePrivateDnsZoneId" in json.dumps(
        main_template.modules["tablePrivateEndpoint"].params["privateDnsZoneId"]
    )
    assert module_call(main, "sitePrivateEndpoint")[1]["groupId"] == "sites"
    assert "functionApp" in json.dumps(main_template.modules["sitePrivateEndpoint"].params["targetId"])
    assert "sitesPrivateDnsZoneId" in json.dumps(
        main_template.modules["sitePrivateEndpoint"].params["privateDnsZoneId"]
    )


@pytest.mark.parametrize("plan", ["FlexConsumption", "Dedicated"])
def test_private_mode_disables_the_apps_public_network_access(plan: str) -> None:
    # Nothing needs the public endpoint once Event Grid delivers to the queue: resync and deployments
    # go through the site's private endpoint.
    assert module_call(deployed(networkMode="Private", hostingPlan=plan), "functionApp")[1]["publicNetworkAccess"] == (
        "Disabled"
    )
    assert module_call(deployed(networkMode="Public", hostingPlan=plan), "functionApp")[1]["publicNetworkAccess"] == (
        "Enabled"
    )
    function_app = template("modules/function-app.bicep")
    assert site().properties["publicNetworkAccess"] == "publicNetworkAccess"
    assert function_app.parameters["publicNetworkAccess"]["decorators"][0]["argument"] == ["Enabled", "Disabled"]
    site_config = site().properties["siteConfig"]
    assert site_config["ipSecurityRestrictions"] == []
    # Private mode denies the scm site too, with no rule: the predeploy hook adds the deployer's
    # address for `azd deploy` and each provision writes these values again, closing it.
    assert site_config["scmIpSecurityRestrictions"] == []
    for access, action in (("Enabled", "Allow"), ("Disabled", "Deny")):
        evaluator = Evaluator.for_template(function_app, {"publicNetworkAccess": access})
        assert evaluator.value(site_config["ipSecurityRestrictionsDefaultAction"]) == action
        assert evaluator.value(site_config["scmIpSecurityRestrictionsDefaultAction"]) == action
    assert site_config["scmIpSecurityRestrictionsUseMain"] is False
    assert "inboundAllowedIpRanges" not in template("main.bicep").parameters


@pytest.mark.parametrize(
    ("cloud", "blob", "vault", "sites"),
    [
        (
            "AzureCloud",
            "privatelink.blob.core.windows.net",
            "privatelink.vaultcore.azure.net",
            "privatelink.azurewebsites.net",
        ),
        (
            "AzureChinaCloud",
            "privatelink.blob.core.chinacloudapi.cn",
            "privatelink.vaultcore.azure.cn",
            "privatelink.chinacloudsites.cn",
        ),
        (
            "AzureUSGovernment",
            "privatelink.blob.core.usgovcloudapi.net",
            "privatelink.vaultcore.usgovcloudapi.net",
            "privatelink.azurewebsites.us",
        ),
    ],
)
def test_private_dns_zones_are_the_clouds_own(cloud: str, blob: str, vault: str, sites: str) -> None:
    network = template("modules/network.bicep")
    evaluator = Evaluator.for_template(network, {"blobPrivateDnsZoneId": "", "keyVaultPrivateDnsZoneId": ""}, cloud)
    assert evaluator.value("blobZoneName") == blob
    assert evaluator.value("keyVaultZoneName") == vault
    assert evaluator.value("queueZoneName") == blob.replace(".blob.", ".queue.")
    assert evaluator.value("tableZoneName") == blob.replace(".blob.", ".table.")
    assert evaluator.value("sitesZoneName") == sites


def test_private_dns_zones_are_created_or_taken_as_given() -> None:
    network = template("modules/network.bicep")
    zones = network.resources("Microsoft.Network/privateDnsZones")
    links = network.resources("Microsoft.Network/privateDnsZones/virtualNetworkLinks")
    created = {"createBlobZone", "createKeyVaultZone", "createQueueZone", "createTableZone", "createSitesZone"}
    assert {z.condition for z in zones} == created
    assert {link.condition for link in links} == created
    hub = "/subscriptions/9/resourceGroups/rg-hub/providers/Microsoft.Network/privateDnsZones/privatelink.blob.core.windows.net"
    given = Evaluator.for_template(
        network,
        {
            "blobPrivateDnsZoneId": hub,
            "keyVaultPrivateDnsZoneId": "",
            "queuePrivateDnsZoneId": "",
            "tablePrivateDnsZoneId": "",
            "sitesPrivateDnsZoneId": "",
        },
    )
    assert given.value("createBlobZone") is False
    assert given.value("createKeyVaultZone") is True
    outputs = network.document["outputs"]
    assert conditional(outputs["blobPrivateDnsZoneId"]["value"])["false_value"] == "blobPrivateDnsZoneId"
    assert (
        module_call(deployed(networkMode="Private", blobPrivateDnsZoneId=hub), "network")[1]["blobPrivateDnsZoneId"]
        == hub
    )


def test_key_vault_private_endpoint_can_wait_for_manual_approval() -> None:
    endpoint = one(template("modules/private-endpoint.bicep").resources("Microsoft.Network/privateEndpoints"))
    automatic = conditional(endpoint.properties["privateLinkServiceConnections"])
    manual = conditional(endpoint.properties["manualPrivateLinkServiceConnections"])
    assert (automatic["condition"], automatic["true_value"], automatic["false_value"]) == (
        "manualApproval",
        [],
        "connection",
    )
    assert (manual["condition"], manual["true_value"], manual["false_value"]) == ("manualApproval", "connection", [])


def test_dead_letters_live_in_an_account_that_still_denies_by_default_in_private_mode() -> None:
    # Event Grid reaches it through the trusted-service exception, which needs public network
    # access Enabled; the host storage is separate so it can refuse public traffic entirely.
    for mode, action in (("Public", "Allow"), ("Private", "Deny")):
        values = module_call(deployed(networkMode=mode), "deadLetterStorage")[1]
        assert (values["publicNetworkAccess"], values["networkDefaultAction"]) == ("Enabled", action)
        assert values["containerName"] == "eventgrid-deadletter"
    storage = one(template("modules/storage.bicep").resources("Microsoft.Storage/storageAccounts"))
    assert storage.properties["networkAcls"]["bypass"] == "AzureServices"
    main = template("main.bicep")
    assert main.document["outputs"]["TRUSTSYNC_DEADLETTER_STORAGE_ACCOUNT_ID"]["value"] == {
        "operator": {
            "type": "property_accessor",
            "operands": {
                "operand_1": "deadLetterStorage",
                "operand_2": {
                    "operator": {"type": "property_accessor", "operands": {"operand_1": "outputs", "operand_2": "id"}}
                },
            },
        }
    }


def test_mode_dependent_skips_name_a_parameter_of_their_template() -> None:
    # tests/infra/checkov_variants.py keeps a skip marked [when name=value] only for module calls
    # that pass that value; a marker naming no parameter would never be filtered.
    markers = 0
    for path in bicep_files():
        declared = Template(path).parameters
        for match in re.finditer(r"checkov:skip=\S+:\s*\[when (\w+)=([^\]]+)\]", path.read_text()):
            markers += 1
            assert match[1] in declared, f"{path.name}: {match[1]} is not a parameter"
            assert match[2] in declared[match[1]]["decorators"][0]["argument"], f"{path.name}: {match[2]} not allowed"
    assert markers >= 2


# --- lost events are not silent ----------------------------------------------------------------------------


def metric_alert(symbol: str) -> dict[str, Any]:
    alerts = template("access/eventgrid-alerts.bicep")
    rule = alerts.resource(symbol)
    assert rule.type == "Microsoft.Insights/metricAlerts"
    assert rule.properties["scopes"] == ["systemTopicId"]
    assert rule.properties["actions"] == "actionGroups"
    (criterion,) = rule.properties["criteria"]["allOf"]
    assert criterion["metricNamespace"] == "Microsoft.EventGrid/systemTopics"
    # Only this deployment's event subscription: the topic may be shared.
    (dimension,) = alerts.deref(criterion["dimensions"])
    assert dimension["name"] == "EventSubscriptionName"
    assert "eventSubscriptionName" in dimension["values"]
    assert rule.condition is None
    return dict(criterion)


def test_alert_on_dead_lettered_events() -> None:
    criterion = metric_alert("deadLetterAlert")
    assert (criterion["metricName"], criterion["operator"], criterion["threshold"]) == (
        "DeadLetteredCount",
        "GreaterThan",
        0,
    )


def test_alert_on_delivery_failures() -> None:
    criterion = metric_alert("deliveryFailureAlert")
    assert criterion["metricName"] == "DeliveryAttemptFailCount"
    assert criterion["threshold"] == "deliveryFailuresPerHour"


def test_delivery_alerts_use_the_app_action_group_and_watch_the_resolved_topic() -> None:
    alerts = template("access/eventgrid-alerts.bicep")
    groups = conditional(alerts.variables["actionGroups"])
    assert groups["false_value"] == [{"actionGroupId": "actionGroupId"}]
    assert template("modules/alerts.bicep").document["outputs"]["actionGroupId"]["value"] == {
        "operator": {
            "type": "conditional",
            "operands": {
                "condition": "hasEmail",
                "true_value": {
                    "operator": {
                        "type": "property_accessor",
                        "operands": {"operand_1": "actionGroup", "operand_2": "id"},
                    }
                },
                "false_value": "",
            },
        }
    }
    assert "alerts" in json.dumps(template("main.bicep").document["outputs"]["TRUSTSYNC_ACTION_GROUP_ID"])
    access = template("access.bicep")
    module = access.modules["eventGridAlerts"]
    assert module.params["actionGroupId"] == "actionGroupId"
    assert module.params["eventSubscriptionName"] == "eventSubscriptionName"
    assert "systemTopicId" in json.dumps(module.params["systemTopicId"])
    # Into the app resource group (that of the dead-letter account), which azd down deletes.
    assert "deadLetterIdParts" in json.dumps(module.body["scope"])


# --- a vault's one system topic is shared, never taken over --------------------------------------------------


def test_an_existing_system_topic_is_referenced_never_created() -> None:
    keyvault = template("access/keyvault.bicep")
    created = keyvault.resource("systemTopic")
    assert created.condition == "createSystemTopic"
    assert keyvault.variables["createSystemTopic"] == {
        "function": {"type": "empty", "parameters": {"item_to_test": "existingSystemTopicName"}}
    }
    assert created.body["name"] == "newSystemTopicName"
    reused = keyvault.resource("existingSystemTopic")
    assert reused.existing  # only referenced: not among the deployment's resources, so never deleted
    assert "existingSystemTopicResourceGroup" in json.dumps(reused.body["scope"])


# --- generated names fit their limits -------------------------------------------------------------------------

NAME_LIMITS = {
    "Microsoft.Resources/resourceGroups": 90,
    "Microsoft.Resources/deployments": 64,
    "Microsoft.Web/sites": 60,
    "Microsoft.Web/serverfarms": 40,
    "Microsoft.Storage/storageAccounts": 24,
    "Microsoft.Storage/storageAccounts/blobServices/containers": 63,
    "Microsoft.ManagedIdentity/userAssignedIdentities": 128,
    "Microsoft.OperationalInsights/workspaces": 63,
    "Microsoft.Insights/components": 260,
    "Microsoft.Insights/actionGroups": 260,
    "Microsoft.Insights/scheduledQueryRules": 260,
    "Microsoft.Insights/metricAlerts": 260,
    "Microsoft.Insights/workbooks": 36,  # a GUID
    "Microsoft.Network/virtualNetworks": 64,
    "Microsoft.Network/networkSecurityGroups": 80,
    "Microsoft.Network/privateEndpoints": 64,
    "Microsoft.Network/privateDnsZones/virtualNetworkLinks": 80,
    "Microsoft.EventGrid/systemTopics": 50,  # as Event Grid topics; PSRule Azure.EventGrid.SystemTopicNaming
    "Microsoft.EventGrid/systemTopics/eventSubscriptions": 64,
    "Microsoft.Network/privateDnsZones": 253,
    "Microsoft.Network/privateEndpoints/privateDnsZoneGroups": 80,
    "Microsoft.Storage/storageAccounts/queueServices/queues": 63,
}
# Child resources whose name the platform fixes.
FIXED_NAMES = {
    "Microsoft.Storage/storageAccounts/blobServices": {"default"},
    "Microsoft.Storage/storageAccounts/queueServices": {"default"},
    "Microsoft.Web/sites/config": {"web"},
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies": {"ftp", "scm"},
}
# azd environment names: 1-64 of letters, digits, '-', '_', '.', '(' and ')' (azd's
# EnvironmentNameRegexp, the rules of an ARM deployment name), every shape of them.
AZD_ENVIRONMENT_NAME = re.compile(r"[a-zA-Z0-9\-()_.]{1,64}")
ENVIRONMENT_NAMES = [
    "d",
    "prod",
    "x" * 40,
    "team-a-" + "p" * 43,
    "e" * 63,
    "z" * 64,
    "platform-apim-" + "q" * 50,
    "trustsync_prod",
    "prod.",
    ".",
    "_",
    "(prod)",
    "team.a_(b)-c",
    "Prod_WestEurope.v2",
    "_" * 64,
    "a." * 32,
    "(" + "x" * 62 + ")",
]
# Event Grid system topics and event subscriptions: letters, digits and hyphens.
EVENT_GRID_NAME = re.compile(r"[A-Za-z0-9-]+")
# Resource groups and deployments: letters, digits, '-', '_', '.', '(' and ')'; no final '.'.
GROUP_NAME = re.compile(r"[-\w.()]*[-\w()]")


def generated_names(environment_name: str) -> list[tuple[str, str, str]]:
    """(where, type, name) for every name the deployment generates, evaluated."""
    names = []
    main_template = template("main.bicep")
    main = deployed(environmentName=environment_name, networkMode="Private")
    outputs = main_template.document["outputs"]

    def add_template(owner: Template, evaluator: Evaluator, where: str) -> None:
        for resource in owner.resources():
            if resource.existing or resource.type.startswith("Microsoft.Authorization/"):
                continue  # role definitions and assignments are named by guid()
            names.append((f"{where}:{resource.symbol}", resource.type, evaluator.value(resource.body["name"])))
        for symbol, module in owner.modules.items():
            names.append((f"{where}:{symbol}", "Microsoft.Resources/deployments", evaluator.value(module.body["name"])))
            target = Template((owner.path.parent / module.path).resolve())
            add_template(
                target, Evaluator.for_template(target, module_parameters(evaluator, module)), f"{where}>{symbol}"
            )

    add_template(main_template, main, "main.bicep")
    for output, type_ in (
        ("TRUSTSYNC_EVENT_SUBSCRIPTION_NAME", "Microsoft.EventGrid/systemTopics/eventSubscriptions"),
        ("TRUSTSYNC_ACCESS_DEPLOYMENT_NAME", "Microsoft.Resources/deployments"),
        ("TRUSTSYNC_EVENTGRID_DEPLOYMENT_NAME", "Microsoft.Resources/deployments"),
        ("TRUSTSYNC_NEW_SYSTEM_TOPIC_NAME", "Microsoft.EventGrid/systemTopics"),
    ):
        names.append((f"main.bicep output {output}", type_, main.value(outputs[output]["value"])))
    # The hook deployments, with the values the hooks pass (main.bicep outputs among them).
    hook_values = {
        "environmentName": environment_name,
        "apimResourceId": DEPLOYMENT["apimResourceId"],
        "deadLetterStorageAccountId": "/subscriptions/1111/resourceGroups/rg-app/providers/Microsoft.Storage/storageAccounts/st",
        "newSystemTopicName": main.value(outputs["TRUSTSYNC_NEW_SYSTEM_TOPIC_NAME"]["value"]),
        "eventSubscriptionName": main.value(outputs["TRUSTSYNC_EVENT_SUBSCRIPTION_NAME"]["value"]),
        "existingSystemTopicName": "",
    }
    for name in ("access.bicep", "eventgrid.bicep"):
        owner = template(name)
        values = {k: v for k, v in hook_values.items() if k in owner.parameters}
        add_template(owner, Evaluator.for_template(owner, values), name)
    return names


@pytest.mark.parametrize("environment_name", ENVIRONMENT_NAMES, ids=lambda n: f"{len(n)}-chars-{n[:12]}")
def test_generated_names_fit_their_limits(environment_name: str) -> None:
    assert AZD_ENVIRONMENT_NAME.fullmatch(environment_name), "a name azd accepts"
    names = generated_names(environment_name)
    checked = {type_ for _, type_, _ in names}
    assert "Microsoft.EventGrid/systemTopics/eventSubscriptions" in checked
    for where, type_, name in names:
        if type_ in FIXED_NAMES:
            assert name in FIXED_NAMES[type_], f"{where}: {name!r}"
            continue
        assert type_ in NAME_LIMITS, f"{where}: no known limit for {type_}"
        assert 1 <= len(name) <= NAME_LIMITS[type_], f"{where}: {type_} name {name!r} is {len(name)} characters"
        if type_ == "Microsoft.Storage/storageAccounts":
            assert re.fullmatch(r"[a-z0-9]{3,24}", name), name
        if type_ == "Microsoft.EventGrid/systemTopics/eventSubscriptions":
            assert re.fullmatch(r"[A-Za-z0-9-]{3,64}", name), name
        if type_.startswith("Microsoft.EventGrid/"):
            assert EVENT_GRID_NAME.fullmatch(name), f"{where}: {name!r}"
        if type_ in ("Microsoft.Resources/resourceGroups", "Microsoft.Resources/deployments"):
            assert GROUP_NAME.fullmatch(name), f"{where}: {name!r}"


def test_long_environment_names_keep_distinct_names() -> None:
    # Two environments on one vault whose 64-character names differ only at the end must not share
    # an event subscription or a deployment: the cut names carry a hash of the whole name.
    first = {where: name for where, _, name in generated_names("platform-apim-westeurope-" + "a" * 38 + "1")}
    second = {where: name for where, _, name in generated_names("platform-apim-westeurope-" + "a" * 38 + "2")}
    # The names that live outside the environment's own resource group (shared scopes).
    shared = [w for w in first if " output " in w or w.startswith(("access.bicep:", "eventgrid.bicep:"))]
    assert len(shared) >= 8, shared
    for where in shared:
        assert first[where] != second[where], where


def test_environment_names_that_differ_only_in_punctuation_keep_distinct_names() -> None:
    # 'prod_a', 'prod.a' and 'prod-a' normalise to the same letters: a hash of the original name
    # keeps their event subscriptions on one vault's topic apart.
    outputs = ("TRUSTSYNC_EVENT_SUBSCRIPTION_NAME", "TRUSTSYNC_NEW_SYSTEM_TOPIC_NAME", "AZURE_RESOURCE_GROUP")
    seen: dict[str, set[str]] = {output: set() for output in outputs}
    for environment_name in ("prod-a", "prod_a", "prod.a", "prod(a)", "prod(a"):
        main = deployed(environmentName=environment_name)
        names = {where: name for where, _, name in generated_names(environment_name)}
        seen["TRUSTSYNC_EVENT_SUBSCRIPTION_NAME"].add(names["main.bicep output TRUSTSYNC_EVENT_SUBSCRIPTION_NAME"])
        seen["TRUSTSYNC_NEW_SYSTEM_TOPIC_NAME"].add(names["main.bicep output TRUSTSYNC_NEW_SYSTEM_TOPIC_NAME"])
        seen["AZURE_RESOURCE_GROUP"].add(main.value("resourceGroupNameFull"))
    for output, values in seen.items():
        assert len(values) == 5, (output, values)
    # The tag azd finds its resources by is the environment name itself, never the normalised one.
    assert call_args(template("main.bicep").variables["allTags"])[1]["'azd-env-name'"] == "environmentName"


def test_short_names_stay_as_they_were() -> None:
    # A name that fits is not changed, so existing environments keep their event subscription.
    names = {where: name for where, _, name in generated_names("dev")}
    assert names["main.bicep output TRUSTSYNC_EVENT_SUBSCRIPTION_NAME"] == "trustsync-dev"
    assert names["main.bicep output TRUSTSYNC_ACCESS_DEPLOYMENT_NAME"] == "trustsync-access-dev"
    assert names["main.bicep output TRUSTSYNC_NEW_SYSTEM_TOPIC_NAME"] == "evgt-trustsync-dev"


def test_conditions_are_parenthesised() -> None:
    # pycep (and so checkov) binds ?: and ! more loosely than Bicep: `a <= 64 ? b : c` parses as
    # `a <= (64 ? b : c)`. Such a parse shows up as a conditional inside a comparison, or a
    # condition that is a bare literal.
    comparisons = {
        "equals",
        "not_equals",
        "less_than",
        "less_than_or_equals",
        "greater_than",
        "greater_than_or_equals",
        "and",
        "or",
    }

    def walk(value: Any, where: str) -> None:
        if isinstance(value, dict):
            if is_operator(value):
                kind = value["operator"]["type"]
                operands = value["operator"]["operands"]
                if kind in comparisons:
                    for operand in operands.values():
                        assert not is_operator(operand, "conditional"), f"{where}: parenthesise the condition"
                if kind == "conditional":
                    assert not isinstance(operands["condition"], (int, float)), f"{where}: parenthesise the condition"
                if kind == "not":
                    assert not is_operator(operands["bool_value"], "and"), f"{where}: write (!a) && b"
                    assert not is_operator(operands["bool_value"], "or"), f"{where}: write (!a) || b"
            for item in value.values():
                walk(item, where)
        elif isinstance(value, list):
            for item in value:
                walk(item, where)

    for path in bicep_files():
        walk(parse(path), path.name)
        # Interpolations are parsed by the evaluator; check those too.
        for text in re.findall(r"\$\{([^{}]*)\}", path.read_text()):
            with contextlib.suppress(Exception):  # not every ${...} in a comment is an expression
                walk(parse_expression(text), path.name)


def test_evaluator_refuses_what_it_cannot_know() -> None:
    with pytest.raises(Unevaluable):
        deployed().value(template("main.bicep").modules["functionApp"].params["storageAccountName"])
