# azd postprovision hook (Windows): see postprovision.sh, which this mirrors.
# Finds the vault's Event Grid system topic (reused when it exists and is not this environment's
# own; never deleted then), records it in the azd environment, and deploys infra/access.bicep as
# subscription deployment "trustsync-access-<env>": Key Vault roles, the system topic when the
# vault has none, the custom APIM role, dead-letter access and the delivery alerts. Idempotent.
. (Join-Path $PSScriptRoot 'common.ps1')

Import-AzdEnv
Assert-Vars @('AZURE_ENV_NAME', 'AZURE_SUBSCRIPTION_ID', 'AZURE_LOCATION', 'TRUSTSYNC_PRINCIPAL_ID',
    'TRUSTSYNC_KEYVAULT_NAME', 'TRUSTSYNC_KEYVAULT_RESOURCE_GROUP', 'TRUSTSYNC_APIM_RESOURCE_ID',
    'TRUSTSYNC_DEADLETTER_STORAGE_ACCOUNT_ID', 'TRUSTSYNC_DEADLETTER_CONTAINER')
$null = Assert-Az
$names = Get-TrustSyncNames

# The preprovision hook's choice must be what was provisioned. An azd that does not reload its
# environment after a hook passes the previous value; the next `azd provision` passes this one.
if ($env:TRUSTSYNC_HOSTING_PLAN_RESOLVED -and $env:TRUSTSYNC_HOSTING_PLAN_DEPLOYED -and
    $env:TRUSTSYNC_HOSTING_PLAN_RESOLVED -ne $env:TRUSTSYNC_HOSTING_PLAN_DEPLOYED) {
    Stop-Hook "provisioned the $($env:TRUSTSYNC_HOSTING_PLAN_DEPLOYED) plan, but the preprovision hook chose $($env:TRUSTSYNC_HOSTING_PLAN_RESOLVED): this azd did not reload the environment after the hook; run azd provision again (or update azd)"
}

Write-Log "checking Key Vault $($env:TRUSTSYNC_KEYVAULT_NAME)"
$vault = az keyvault show --name $env:TRUSTSYNC_KEYVAULT_NAME `
    --resource-group $env:TRUSTSYNC_KEYVAULT_RESOURCE_GROUP --subscription $names.KeyVaultSubscription `
    --query '{rbac: properties.enableRbacAuthorization, location: location, id: id}' --output json | ConvertFrom-Json
if ($LASTEXITCODE -ne 0 -or -not $vault) {
    Stop-Hook "cannot read Key Vault $($env:TRUSTSYNC_KEYVAULT_NAME) in $($env:TRUSTSYNC_KEYVAULT_RESOURCE_GROUP) (subscription $($names.KeyVaultSubscription))"
}
# Role assignments do nothing on a vault that still uses access policies.
if ($vault.rbac -ne $true) {
    Stop-Hook "Key Vault $($env:TRUSTSYNC_KEYVAULT_NAME) uses access policies; switch it to the Azure RBAC permission model (properties.enableRbacAuthorization = true) first"
}

# --- the vault's system topic ---------------------------------------------------------------------
$existingTopic = ''
$existingTopicGroup = ''
$topicIdentity = ''
if ($env:TRUSTSYNC_EXISTING_SYSTEM_TOPIC) {
    $existingTopic = $env:TRUSTSYNC_EXISTING_SYSTEM_TOPIC
    $existingTopicGroup = Get-EnvOrDefault 'TRUSTSYNC_EXISTING_SYSTEM_TOPIC_RESOURCE_GROUP' $env:TRUSTSYNC_KEYVAULT_RESOURCE_GROUP
    $topicIdentity = az eventgrid system-topic show --name $existingTopic --resource-group $existingTopicGroup `
        --subscription $names.KeyVaultSubscription --query 'identity.type' --output tsv
    if ($LASTEXITCODE -ne 0) { Stop-Hook "cannot read system topic $existingTopic in $existingTopicGroup (TRUSTSYNC_EXISTING_SYSTEM_TOPIC)" }
    Write-Log "using the system topic named in TRUSTSYNC_EXISTING_SYSTEM_TOPIC: $existingTopic"
}
else {
    $topics = az eventgrid system-topic list --subscription $names.KeyVaultSubscription `
        --query '[].{source: source, name: name, group: resourceGroup, tags: tags, identity: identity.type}' `
        --output json | ConvertFrom-Json
    if ($LASTEXITCODE -ne 0) { Stop-Hook "cannot list the Event Grid system topics of subscription $($names.KeyVaultSubscription)" }
    $found = @($topics | Where-Object { $_.source -and $_.source -ieq $vault.id }) | Select-Object -Last 1
    # Strict mode: read the tag only when the topic has it.
    $foundEnv = if ($found -and $found.tags -and $found.tags.PSObject.Properties['azd-env-name']) { $found.tags.'azd-env-name' } else { '' }
    if (-not $found) {
        Write-Log "Key Vault $($env:TRUSTSYNC_KEYVAULT_NAME) has no Event Grid system topic; creating $($names.NewSystemTopic)"
    }
    elseif ($found.name -eq $names.NewSystemTopic -and $foundEnv -eq $env:AZURE_ENV_NAME) {
        Write-Log "system topic $($found.name) was created by this environment; it stays part of $($names.AccessDeployment)"
    }
    else {
        $existingTopic = $found.name
        $existingTopicGroup = $found.group
        $topicIdentity = "$($found.identity)"
        Write-Log "Key Vault $($env:TRUSTSYNC_KEYVAULT_NAME) already has system topic $existingTopic (resource group $existingTopicGroup); subscribing to it, never deleting it"
    }
}
if ($existingTopic) {
    # Dead letters are written with the topic's system-assigned identity.
    if ($topicIdentity -notlike '*SystemAssigned*') {
        Stop-Hook "system topic $existingTopic has no system-assigned identity, which dead-lettering uses; its owner can add one: az eventgrid system-topic update --name $existingTopic --resource-group $existingTopicGroup --subscription $($names.KeyVaultSubscription) --identity systemassigned"
    }
    Set-AzdEnv 'TRUSTSYNC_SYSTEM_TOPIC_NAME' $existingTopic
    Set-AzdEnv 'TRUSTSYNC_SYSTEM_TOPIC_RESOURCE_GROUP' $existingTopicGroup
    Set-AzdEnv 'TRUSTSYNC_SYSTEM_TOPIC_OWNED' 'false'
}
else {
    Set-AzdEnv 'TRUSTSYNC_SYSTEM_TOPIC_NAME' $names.NewSystemTopic
    Set-AzdEnv 'TRUSTSYNC_SYSTEM_TOPIC_RESOURCE_GROUP' $env:TRUSTSYNC_KEYVAULT_RESOURCE_GROUP
    Set-AzdEnv 'TRUSTSYNC_SYSTEM_TOPIC_OWNED' 'true'
}

Write-Log "deploying $($names.AccessDeployment) (Key Vault and APIM access, Event Grid system topic, delivery alerts)"
az deployment sub create `
    --name $names.AccessDeployment `
    --subscription $env:AZURE_SUBSCRIPTION_ID `
    --location $env:AZURE_LOCATION `
    --template-file infra/access.bicep `
    --parameters `
    "environmentName=$($env:AZURE_ENV_NAME)" `
    "principalId=$($env:TRUSTSYNC_PRINCIPAL_ID)" `
    "keyVaultName=$($env:TRUSTSYNC_KEYVAULT_NAME)" `
    "keyVaultLocation=$($vault.location)" `
    "keyVaultResourceGroupName=$($env:TRUSTSYNC_KEYVAULT_RESOURCE_GROUP)" `
    "keyVaultSubscriptionId=$($names.KeyVaultSubscription)" `
    "apimResourceId=$($env:TRUSTSYNC_APIM_RESOURCE_ID)" `
    "certificateNames=$(Get-EnvOrDefault 'TRUSTSYNC_CERTIFICATE_NAMES' '*')" `
    "trustBundles=$(Get-EnvOrDefault 'TRUSTSYNC_TRUST_BUNDLES' '')" `
    "caStore=$(Get-EnvOrDefault 'TRUSTSYNC_CA_STORE' 'off')" `
    "backendTls=$(Get-EnvOrDefault 'TRUSTSYNC_BACKEND_TLS' 'off')" `
    "scopeKeyVaultRolesToObjects=$(Get-EnvOrDefault 'TRUSTSYNC_SCOPE_KEYVAULT_ROLES_TO_OBJECTS' 'true')" `
    "existingSystemTopicName=$existingTopic" `
    "existingSystemTopicResourceGroup=$existingTopicGroup" `
    "newSystemTopicName=$($names.NewSystemTopic)" `
    "eventSubscriptionName=$($names.EventSubscription)" `
    "actionGroupId=$(Get-EnvOrDefault 'TRUSTSYNC_ACTION_GROUP_ID' '')" `
    "deadLetterStorageAccountId=$($env:TRUSTSYNC_DEADLETTER_STORAGE_ACCOUNT_ID)" `
    "deadLetterContainerName=$($env:TRUSTSYNC_DEADLETTER_CONTAINER)" `
    "eventQueueName=$(Get-EnvOrDefault 'TRUSTSYNC_EVENT_QUEUE_NAME' '')" `
    --output none
if ($LASTEXITCODE -ne 0) { Stop-Hook "deployment $($names.AccessDeployment) failed" }

Write-Log 'access granted; role assignments can take a few minutes to take effect'
