# azd postprovision hook (Windows): see postprovision.sh, which this mirrors.
# Deploys infra/access.bicep as subscription deployment "trustsync-access-<env>": Key Vault roles,
# the Event Grid system topic, the custom APIM role and dead-letter access. Idempotent.
. (Join-Path $PSScriptRoot 'common.ps1')

Import-AzdEnv
Assert-Vars @('AZURE_ENV_NAME', 'AZURE_SUBSCRIPTION_ID', 'AZURE_LOCATION', 'TRUSTSYNC_PRINCIPAL_ID',
    'TRUSTSYNC_KEYVAULT_NAME', 'TRUSTSYNC_KEYVAULT_RESOURCE_GROUP', 'TRUSTSYNC_APIM_RESOURCE_ID',
    'TRUSTSYNC_DEADLETTER_STORAGE_ACCOUNT_ID', 'TRUSTSYNC_DEADLETTER_CONTAINER')
Assert-Az
$names = Get-TrustSyncNames

Write-Log "checking Key Vault $($env:TRUSTSYNC_KEYVAULT_NAME)"
$vault = az keyvault show --name $env:TRUSTSYNC_KEYVAULT_NAME `
    --resource-group $env:TRUSTSYNC_KEYVAULT_RESOURCE_GROUP --subscription $names.KeyVaultSubscription `
    --query '{rbac: properties.enableRbacAuthorization, location: location}' --output json | ConvertFrom-Json
if ($LASTEXITCODE -ne 0 -or -not $vault) {
    Stop-Hook "cannot read Key Vault $($env:TRUSTSYNC_KEYVAULT_NAME) in $($env:TRUSTSYNC_KEYVAULT_RESOURCE_GROUP) (subscription $($names.KeyVaultSubscription))"
}
# Role assignments do nothing on a vault that still uses access policies.
if ($vault.rbac -ne $true) {
    Stop-Hook "Key Vault $($env:TRUSTSYNC_KEYVAULT_NAME) uses access policies; switch it to the Azure RBAC permission model (properties.enableRbacAuthorization = true) first"
}

Write-Log "deploying $($names.AccessDeployment) (Key Vault and APIM access, Event Grid system topic)"
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
    "scopeKeyVaultRolesToObjects=$(Get-EnvOrDefault 'TRUSTSYNC_SCOPE_KEYVAULT_ROLES_TO_OBJECTS' 'true')" `
    "existingSystemTopicName=$(Get-EnvOrDefault 'TRUSTSYNC_EXISTING_SYSTEM_TOPIC' '')" `
    "deadLetterStorageAccountId=$($env:TRUSTSYNC_DEADLETTER_STORAGE_ACCOUNT_ID)" `
    "deadLetterContainerName=$($env:TRUSTSYNC_DEADLETTER_CONTAINER)" `
    --output none
if ($LASTEXITCODE -ne 0) { Stop-Hook "deployment $($names.AccessDeployment) failed" }

Write-Log 'access granted; role assignments can take a few minutes to take effect'
