# azd preprovision hook (Windows): see preprovision.sh, which this mirrors.
# 1. Resolves TRUSTSYNC_HOSTING_PLAN (Auto = Flex Consumption where the region offers it, per
#    az functionapp list-flexconsumption-locations; otherwise Dedicated) into
#    TRUSTSYNC_HOSTING_PLAN_RESOLVED, and says why.
# 2. Checks that you may do what the deployment does at each scope (deployments/write included).
. (Join-Path $PSScriptRoot 'common.ps1')

Import-AzdEnv 'AZURE_LOCATION'
Assert-Vars @('AZURE_ENV_NAME', 'AZURE_SUBSCRIPTION_ID', 'AZURE_LOCATION', 'TRUSTSYNC_KEYVAULT_RESOURCE_GROUP',
    'TRUSTSYNC_APIM_RESOURCE_ID')
Assert-Az
$names = Get-TrustSyncNames

# --- 1. hosting plan ---------------------------------------------------------------------------
$requested = Get-EnvOrDefault 'TRUSTSYNC_HOSTING_PLAN' 'Auto'
if ($requested -cnotin @('Auto', 'FlexConsumption', 'Dedicated')) {
    Stop-Hook "TRUSTSYNC_HOSTING_PLAN is '$requested'; use Auto, FlexConsumption or Dedicated"
}
$region = $env:AZURE_LOCATION.ToLowerInvariant().Replace(' ', '')
$sku = Get-EnvOrDefault 'TRUSTSYNC_DEDICATED_PLAN_SKU' 'B1'
$flexRegions = az functionapp list-flexconsumption-locations --subscription $env:AZURE_SUBSCRIPTION_ID `
    --query '[].name' --output tsv 2>$null
$offered = 'unknown'
if ($LASTEXITCODE -eq 0) {
    # Names may come as display names ("West Europe") or region names (westeurope).
    $offered = if (@($flexRegions | Where-Object { $_ -and $_.ToLowerInvariant().Replace(' ', '') -eq $region }).Count -gt 0) { 'yes' } else { 'no' }
}
switch ("${requested}:$offered") {
    'Auto:yes' { $plan = 'FlexConsumption'; $reason = "$($env:AZURE_LOCATION) offers Flex Consumption" }
    'Auto:no' { $plan = 'Dedicated'; $reason = "$($env:AZURE_LOCATION) does not offer Flex Consumption; a Linux App Service plan ($sku) instead" }
    'Auto:unknown' { $plan = 'Dedicated'; $reason = "the Flex Consumption regions could not be listed (az functionapp list-flexconsumption-locations failed: az too old, or the cloud has no such offer); a Linux App Service plan ($sku) instead" }
    'FlexConsumption:unknown' { $plan = 'FlexConsumption'; $reason = 'TRUSTSYNC_HOSTING_PLAN=FlexConsumption; the region offer could not be read to confirm it' }
    'FlexConsumption:no' { Stop-Hook "TRUSTSYNC_HOSTING_PLAN is FlexConsumption but $($env:AZURE_LOCATION) does not offer it (az functionapp list-flexconsumption-locations); choose another region or TRUSTSYNC_HOSTING_PLAN=Dedicated" }
    default { $plan = $requested; $reason = "TRUSTSYNC_HOSTING_PLAN=$requested" }
}
Set-AzdEnv 'TRUSTSYNC_HOSTING_PLAN_RESOLVED' $plan
Write-Log "hosting plan: $plan ($reason)"

# --- 2. permissions ----------------------------------------------------------------------------
if ((Get-EnvOrDefault 'TRUSTSYNC_SKIP_PERMISSION_CHECK' 'false') -eq 'true') {
    Write-Log 'permission check skipped (TRUSTSYNC_SKIP_PERMISSION_CHECK=true)'
    exit 0
}
$apimGroupScope = $env:TRUSTSYNC_APIM_RESOURCE_ID -replace '/providers/.*$', ''
$vaultGroupScope = "/subscriptions/$($names.KeyVaultSubscription)/resourceGroups/$($env:TRUSTSYNC_KEYVAULT_RESOURCE_GROUP)"
Write-Log 'checking your permissions on the app subscription, the Key Vault and the APIM resource groups'
$missing = @()
$missing += Get-MissingPermissions 'app subscription' "/subscriptions/$($env:AZURE_SUBSCRIPTION_ID)" @(
    'Microsoft.Resources/subscriptions/resourceGroups/write',
    'Microsoft.Resources/deployments/write',
    'Microsoft.Authorization/roleAssignments/write')
$vaultActions = @('Microsoft.Resources/deployments/write', 'Microsoft.Authorization/roleAssignments/write',
    'Microsoft.EventGrid/systemTopics/write', 'Microsoft.EventGrid/systemTopics/eventSubscriptions/write')
if ((Get-EnvOrDefault 'TRUSTSYNC_NETWORK_MODE' 'Public') -eq 'Private' -and
    (Get-EnvOrDefault 'TRUSTSYNC_KEYVAULT_PRIVATE_ENDPOINT_MANUAL_APPROVAL' 'false') -ne 'true') {
    # Approving the vault's private endpoint connection as it is created.
    $vaultActions += 'Microsoft.KeyVault/vaults/privateEndpointConnectionsApproval/action'
}
$missing += Get-MissingPermissions 'Key Vault resource group' $vaultGroupScope $vaultActions
$missing += Get-MissingPermissions 'APIM resource group' $apimGroupScope @(
    'Microsoft.Resources/deployments/write',
    'Microsoft.Authorization/roleDefinitions/write',
    'Microsoft.Authorization/roleAssignments/write')
if ($missing.Count -gt 0) {
    Stop-Hook ("you lack permissions the deployment needs (README: Deploy, Prerequisites):`n" + ($missing -join "`n"))
}
Write-Log 'permissions: every action the deployment needs is granted'
