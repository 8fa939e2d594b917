"""The deployment's intent, asserted on the Bicep itself (parsed by pycep, as checkov does).

No Bicep compiler or Azure is reachable here, so these tests are the executable form of the
design: what is subscribed, who may do what where, that nothing holds a storage key, and that
every app setting the code reads is set.
"""

from __future__ import annotations

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
    Resource,
    Template,
    all_resources,
    bicep_files,
    is_call,
    is_operator,
    parse,
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
FUNCTIONS = ("on_keyvault_event", "resync", "drift_audit")


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


def test_hosting_plan_falls_back_only_in_azure_china() -> None:
    main = template("main.bicep")
    assert "AzureChinaCloud" in main.strings(main.variables["useFlex"])
    assert main.parameters["hostingPlan"]["default"] == "Auto"


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


def test_telemetry_is_entra_only() -> None:
    monitoring = template("modules/monitoring.bicep")
    components = one(monitoring.resources("Microsoft.Insights/components"))
    assert components.properties["DisableLocalAuth"] is True
    workspace = one(monitoring.resources("Microsoft.OperationalInsights/workspaces"))
    assert workspace.properties["features"]["disableLocalAuth"] is True
    auth = conditional(settings_of("hostSettings")["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"])
    assert auth["false_value"] == "Authorization=AAD"
    assert auth["true_value"].endswith(";Authorization=AAD")


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
    assert any(word in text[2] for word in ("roleIds", "storageBlobDataContributor", "gatewayCaOperatorId"))
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
    assert set(permissions[0]["actions"]) == APIM_ACTIONS
    assert not any("*" in action for action in permissions[0]["actions"])
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


def test_key_vault_roles_are_secrets_user_and_reader_scoped_narrowly() -> None:
    keyvault = template("access/keyvault.bicep")
    roles = keyvault.variables["roleIds"]
    assert {ALLOWED_BUILT_IN_ROLES[g] for g in roles.values()} == {"Key Vault Secrets User", "Key Vault Reader"}
    scopes = {}
    for assignment in keyvault.resources(ROLE_ASSIGNMENT):
        scope = assignment.body["scope"]
        if is_operator(scope, "index_accessor"):  # certificateSecrets[i] / certificates[i]
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
    }


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


def test_event_subscription_filters_to_new_certificate_versions_only() -> None:
    eventgrid, subscription = event_subscription()
    types = eventgrid.deref(subscription.properties["filter"]["includedEventTypes"])
    assert types == ["Microsoft.KeyVault.CertificateNewVersionCreated"]


def test_event_subscription_targets_on_keyvault_event_one_event_at_a_time() -> None:
    eventgrid, subscription = event_subscription()
    destination = subscription.properties["destination"]
    assert destination["endpointType"] == "AzureFunction"
    assert destination["properties"]["resourceId"].endswith("/functions/${functionName}")
    assert eventgrid.variables["functionName"] == "on_keyvault_event"
    assert destination["properties"]["maxEventsPerBatch"] == 1


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


def test_system_topic_identity_may_write_only_the_dead_letter_container() -> None:
    topic = template("access/keyvault.bicep").resource("systemTopic")
    assert topic.body["identity"] == {"type": "SystemAssigned"}
    assert topic.properties["topicType"] == "Microsoft.KeyVault.vaults"
    deadletter = template("access/deadletter.bicep")
    assignment = one(deadletter.resources(ROLE_ASSIGNMENT))
    assert (
        deadletter.resource(assignment.body["scope"]).type
        == "Microsoft.Storage/storageAccounts/blobServices/containers"
    )
    assert ALLOWED_BUILT_IN_ROLES[deadletter.variables["storageBlobDataContributor"]] == "Storage Blob Data Contributor"


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
    assert 'status != "in-sync"' in query


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
    for hook in ("postprovision", "postdeploy", "predown"):
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
