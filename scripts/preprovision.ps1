# azd preprovision hook (Windows): see preprovision.sh, which this mirrors. Before anything is
# created it checks, printing what it checked or "could not check" and why:
# 1. the environment name (azd's characters; names use a normalised token);
# 2. that az is on the cloud of AZURE_LOCATION (first run included) and the region is the subscription's;
# 3. the hosting plan (Auto = Flex Consumption where az functionapp list-flexconsumption-locations
#    lists the region, else Dedicated), stored as TRUSTSYNC_HOSTING_PLAN_RESOLVED;
# 4. the vault (exists, Azure RBAC) and each certificate named in TRUSTSYNC_CERTIFICATE_NAMES;
# 5. your permissions on every scope written to (an unreadable scope stops the hook);
# 6. the resource providers, registering the missing ones (Microsoft.App for Flex in private mode).
. (Join-Path $PSScriptRoot 'common.ps1')

Import-AzdEnv 'AZURE_LOCATION'
Assert-Vars @('AZURE_ENV_NAME', 'AZURE_SUBSCRIPTION_ID', 'AZURE_LOCATION')
# azd asks for AZURE_SUBSCRIPTION_ID and AZURE_LOCATION itself; the TRUSTSYNC_* values only after
# this hook, so they are named here with the command that sets them.
foreach ($name in @('TRUSTSYNC_KEYVAULT_NAME', 'TRUSTSYNC_KEYVAULT_RESOURCE_GROUP', 'TRUSTSYNC_APIM_RESOURCE_ID')) {
    if (-not [Environment]::GetEnvironmentVariable($name)) {
        Stop-Hook "$name is not set: azd env set $name <value> (docs/deploy.md, step 2)"
    }
}

# --- 1. environment name -------------------------------------------------------------------------
$envName = $env:AZURE_ENV_NAME
if ($envName -cnotmatch '^[A-Za-z0-9_.()-]+$') {
    Stop-Hook "the azd environment name '$envName' has a character azd does not allow: use 1-64 letters, digits, '-', '_', '.', '(' or ')' (azd env new <name>)"
}
if ($envName.Length -gt 64) {
    Stop-Hook "the azd environment name '$envName' is longer than 64 characters: use 1-64 letters, digits, '-', '_', '.', '(' or ')'"
}
if ($envName -cmatch '[^A-Za-z0-9-]') {
    $normalised = $envName -replace '[_.()]', '-'
    Write-Log "environment name '$envName': Event Grid and resource group names take letters, digits and hyphens only, so names use '$normalised' followed by a short hash of the name"
} else {
    Write-Log "environment name '$envName': used in resource names as it is"
}

# --- 2. cloud and region -------------------------------------------------------------------------
$azCloud = Assert-Az
$names = Get-TrustSyncNames
Write-Log "cloud: az is logged in to $azCloud, the cloud of $($env:AZURE_LOCATION) (checked)"
$region = $env:AZURE_LOCATION.ToLowerInvariant().Replace(' ', '')
$regions = az account list-locations --subscription $env:AZURE_SUBSCRIPTION_ID --query '[].name' --output tsv 2>$null
if ($LASTEXITCODE -eq 0) {
    if (@($regions | Where-Object { $_ -and $_.ToLowerInvariant().Replace(' ', '') -eq $region }).Count -eq 0) {
        Stop-Hook "$($env:AZURE_LOCATION) is not a region of subscription $($env:AZURE_SUBSCRIPTION_ID) in $azCloud (az account list-locations): azd env set AZURE_LOCATION <region>"
    }
    Write-Log "region: $($env:AZURE_LOCATION) is a region of subscription $($env:AZURE_SUBSCRIPTION_ID) (checked)"
} else {
    Write-Log 'region: could not check: the subscription''s regions could not be listed (az account list-locations failed)'
}

# --- 3. hosting plan -----------------------------------------------------------------------------
$requested = Get-EnvOrDefault 'TRUSTSYNC_HOSTING_PLAN' 'Auto'
if ($requested -cnotin @('Auto', 'FlexConsumption', 'Dedicated')) {
    Stop-Hook "TRUSTSYNC_HOSTING_PLAN is '$requested'; use Auto, FlexConsumption or Dedicated"
}
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
$networkMode = Get-EnvOrDefault 'TRUSTSYNC_NETWORK_MODE' 'Public'
if ($networkMode -cnotin @('Public', 'Private')) { Stop-Hook "TRUSTSYNC_NETWORK_MODE is '$networkMode'; use Public or Private" }
Write-Log "hosting plan: $plan ($reason); network mode: $networkMode"

# --- 4. the Key Vault and the named certificates -------------------------------------------------
$vaultName = $env:TRUSTSYNC_KEYVAULT_NAME
$vault = @(az keyvault show --name $vaultName --resource-group $env:TRUSTSYNC_KEYVAULT_RESOURCE_GROUP `
        --subscription $names.KeyVaultSubscription --query '[properties.enableRbacAuthorization, location, id]' --output tsv 2>$null)
if ($LASTEXITCODE -ne 0) {
    Stop-Hook "cannot read Key Vault $vaultName in resource group $($env:TRUSTSYNC_KEYVAULT_RESOURCE_GROUP) (subscription $($names.KeyVaultSubscription)): check TRUSTSYNC_KEYVAULT_NAME, TRUSTSYNC_KEYVAULT_RESOURCE_GROUP and TRUSTSYNC_KEYVAULT_SUBSCRIPTION_ID, and that you may read the vault"
}
$vaultId = $vault[2]
if ($vault[0] -ne 'true') {
    Stop-Hook "Key Vault $vaultName uses access policies; switch it to the Azure RBAC permission model (properties.enableRbacAuthorization = true) first"
}
Write-Log "Key Vault ${vaultName}: Azure RBAC permission model (checked)"

$certificateNames = @((Get-EnvOrDefault 'TRUSTSYNC_CERTIFICATE_NAMES' '*') -split '[,\s]+' | Where-Object { $_ })
$missingCertificates = @()
if ($certificateNames.Count -eq 1 -and $certificateNames[0] -eq '*') {
    Write-Log 'certificates: * (every certificate in the vault; nothing to check by name)'
} else {
    foreach ($name in $certificateNames) {
        if ($name -cnotmatch '^[A-Za-z0-9-]+$') { Stop-Hook "TRUSTSYNC_CERTIFICATE_NAMES: '$name' is not a Key Vault certificate name (1-127 letters, digits and hyphens, comma-separated)" }
        if ($name.Length -gt 127) { Stop-Hook "TRUSTSYNC_CERTIFICATE_NAMES: '$name' is longer than 127 characters" }
        # The vault's data plane: metadata only (the certificate's id), never a secret value.
        $errorText = (az keyvault certificate show --vault-name $vaultName --name $name --query id --output tsv 2>&1 |
                Where-Object { $_ -is [System.Management.Automation.ErrorRecord] } | ForEach-Object { "$_" }) -join "`n"
        if ($LASTEXITCODE -eq 0) { Write-Log "certificate ${name}: exists (checked)"; continue }
        if ($errorText -match 'CertificateNotFound|was not found|not found') {
            $missingCertificates += $name
        } elseif ($errorText -match 'ForbiddenByFirewall|ForbiddenByConnection|Failed to establish|Name or service not known|getaddrinfo|timed out|Max retries exceeded') {
            Write-Log "certificate ${name}: could not check: the vault's data plane is not reachable from this machine (its firewall, or a private endpoint only); the app's first audit reports it if it is missing"
        } elseif ($errorText -match 'ForbiddenByRbac|Forbidden|not authorized') {
            Write-Log "certificate ${name}: could not check: you may not read the vault's certificates (a data-plane role such as Key Vault Reader); the app's first audit reports it if it is missing"
        } else {
            Write-Log "certificate ${name}: could not check: $((($errorText -split "`n")[0]) -replace '^ERROR: ', '')"
        }
    }
    if ($missingCertificates.Count -gt 0) {
        Stop-Hook "Key Vault $vaultName has no certificate named: $($missingCertificates -join ' ') (TRUSTSYNC_CERTIFICATE_NAMES); create it or correct the list: each named certificate gets its own role assignments, which need it to exist"
    }
}

# Trust bundles: plain secrets, each granted on its own (infra/access/keyvault.bicep).
$bundleNames = @((Get-EnvOrDefault 'TRUSTSYNC_TRUST_BUNDLES' '') -split '[,\s]+' | Where-Object { $_ })
$missingBundles = @()
foreach ($name in $bundleNames) {
    if ($name -cnotmatch '^[A-Za-z0-9-]+$') { Stop-Hook "TRUSTSYNC_TRUST_BUNDLES: '$name' is not a Key Vault secret name (1-127 letters, digits and hyphens, comma-separated)" }
    if ($name.Length -gt 127) { Stop-Hook "TRUSTSYNC_TRUST_BUNDLES: '$name' is longer than 127 characters" }
    if ($certificateNames | Where-Object { $_ -ieq $name }) {
        Stop-Hook "TRUSTSYNC_TRUST_BUNDLES: '$name' is also in TRUSTSYNC_CERTIFICATE_NAMES; a bundle is a plain secret, not a certificate's"
    }
    # Metadata only (the versions' ids): never the secret's value.
    $errorText = (az keyvault secret list-versions --vault-name $vaultName --name $name --query '[0].id' --output tsv 2>&1 |
            Where-Object { $_ -is [System.Management.Automation.ErrorRecord] } | ForEach-Object { "$_" }) -join "`n"
    if ($LASTEXITCODE -eq 0) { Write-Log "trust bundle ${name}: exists (checked)"; continue }
    if ($errorText -match 'SecretNotFound|was not found|not found') {
        $missingBundles += $name
    } elseif ($errorText -match 'ForbiddenByFirewall|ForbiddenByConnection|Failed to establish|Name or service not known|getaddrinfo|timed out|Max retries exceeded') {
        Write-Log "trust bundle ${name}: could not check: the vault's data plane is not reachable from this machine (its firewall, or a private endpoint only); the app's first audit reports it if it is missing"
    } elseif ($errorText -match 'ForbiddenByRbac|Forbidden|not authorized') {
        Write-Log "trust bundle ${name}: could not check: you may not list the vault's secrets (a data-plane role such as Key Vault Reader); the app's first audit reports it if it is missing"
    } else {
        Write-Log "trust bundle ${name}: could not check: $((($errorText -split "`n")[0]) -replace '^ERROR: ', '')"
    }
}
if ($missingBundles.Count -gt 0) {
    Stop-Hook "Key Vault $vaultName has no secret named: $($missingBundles -join ' ') (TRUSTSYNC_TRUST_BUNDLES); create it or correct the list: each trust bundle gets its own role assignment, which needs it to exist"
}

# --- the vault's system topic: where the event subscription will be written -----------------------
$topicGroup = ''
if ($env:TRUSTSYNC_EXISTING_SYSTEM_TOPIC) {
    $topicGroup = Get-EnvOrDefault 'TRUSTSYNC_EXISTING_SYSTEM_TOPIC_RESOURCE_GROUP' $env:TRUSTSYNC_KEYVAULT_RESOURCE_GROUP
} else {
    $topics = az eventgrid system-topic list --subscription $names.KeyVaultSubscription `
        --query '[].{source: source, name: name, resourceGroup: resourceGroup}' --output json 2>$null
    if ($LASTEXITCODE -eq 0) {
        $found = @($topics | ConvertFrom-Json | Where-Object { $_.source -and $_.source.ToLowerInvariant() -eq $vaultId.ToLowerInvariant() })
        if ($found.Count -gt 0) {
            $topicGroup = $found[0].resourceGroup
            Write-Log "the vault's Event Grid system topic $($found[0].name) is in resource group $topicGroup (checked); the event subscription is written there"
        } else {
            Write-Log "the vault has no Event Grid system topic yet (checked); one is created in resource group $($env:TRUSTSYNC_KEYVAULT_RESOURCE_GROUP)"
        }
    } else {
        $script:UncheckedPermissions += "  the vault's system topic (az eventgrid system-topic list failed: its resource group is unknown)"
    }
}

# --- 5. permissions ------------------------------------------------------------------------------
if ((Get-EnvOrDefault 'TRUSTSYNC_SKIP_PERMISSION_CHECK' 'false') -eq 'true') {
    Write-Log 'permissions: NOT checked (TRUSTSYNC_SKIP_PERMISSION_CHECK=true); a deployment that lacks one fails with ARM''s error'
} else {
    $apimGroupScope = $env:TRUSTSYNC_APIM_RESOURCE_ID -replace '/providers/.*$', ''
    $vaultGroupScope = "/subscriptions/$($names.KeyVaultSubscription)/resourceGroups/$($env:TRUSTSYNC_KEYVAULT_RESOURCE_GROUP)"
    Write-Log 'checking your permissions on each scope the deployment writes to'
    $missing = @()
    $missing += Get-MissingPermissions 'app subscription' "/subscriptions/$($env:AZURE_SUBSCRIPTION_ID)" @(
        'Microsoft.Resources/subscriptions/resourceGroups/write',
        'Microsoft.Resources/deployments/write',
        'Microsoft.Authorization/roleAssignments/write')
    $vaultActions = @('Microsoft.Resources/deployments/write', 'Microsoft.Authorization/roleAssignments/write')
    $topicInVaultGroup = $topicGroup -and $topicGroup.ToLowerInvariant() -eq $env:TRUSTSYNC_KEYVAULT_RESOURCE_GROUP.ToLowerInvariant()
    if (-not $topicGroup) {
        $vaultActions += @('Microsoft.EventGrid/systemTopics/write', 'Microsoft.EventGrid/systemTopics/eventSubscriptions/write')
    } elseif ($topicInVaultGroup) {
        $vaultActions += 'Microsoft.EventGrid/systemTopics/eventSubscriptions/write'
    }
    if ($networkMode -eq 'Private' -and
        (Get-EnvOrDefault 'TRUSTSYNC_KEYVAULT_PRIVATE_ENDPOINT_MANUAL_APPROVAL' 'false') -ne 'true') {
        # Approving the vault's private endpoint connection as it is created.
        $vaultActions += 'Microsoft.KeyVault/vaults/privateEndpointConnectionsApproval/action'
    }
    $missing += Get-MissingPermissions 'Key Vault resource group' $vaultGroupScope $vaultActions
    if ($topicGroup -and -not $topicInVaultGroup) {
        # The event subscription is a child of the topic: deployed into the topic's resource group.
        $missing += Get-MissingPermissions 'system topic resource group' "/subscriptions/$($names.KeyVaultSubscription)/resourceGroups/$topicGroup" @(
            'Microsoft.Resources/deployments/write',
            'Microsoft.EventGrid/systemTopics/eventSubscriptions/write')
    }
    $missing += Get-MissingPermissions 'APIM resource group' $apimGroupScope @(
        'Microsoft.Resources/deployments/write',
        'Microsoft.Authorization/roleDefinitions/write',
        'Microsoft.Authorization/roleAssignments/write')
    if ($networkMode -eq 'Private') {
        # Existing private DNS zones the private endpoints register in.
        foreach ($zone in @($env:TRUSTSYNC_BLOB_PRIVATE_DNS_ZONE_ID, $env:TRUSTSYNC_QUEUE_PRIVATE_DNS_ZONE_ID,
                $env:TRUSTSYNC_TABLE_PRIVATE_DNS_ZONE_ID, $env:TRUSTSYNC_KEYVAULT_PRIVATE_DNS_ZONE_ID,
                $env:TRUSTSYNC_SITES_PRIVATE_DNS_ZONE_ID)) {
            if ($zone) { $missing += Get-MissingPermissions 'private DNS zone' $zone @('Microsoft.Network/privateDnsZones/join/action') }
        }
    }
    if ($missing.Count -gt 0) {
        Stop-Hook ("you lack permissions the deployment needs (docs/deploy.md, Permissions):`n" + ($missing -join "`n"))
    }
    if ($script:UncheckedPermissions.Count -gt 0) {
        Stop-Hook ("could not read your permissions on:`n" + ($script:UncheckedPermissions -join "`n") +
            "`nso nothing there is known to be granted. Check az (az login, az account show, the cloud) and run azd provision again, or set TRUSTSYNC_SKIP_PERMISSION_CHECK=true to go on unchecked")
    }
    Write-Log 'permissions: every action the deployment needs is granted (checked)'
}

# --- 6. resource providers -----------------------------------------------------------------------
# Registered already, or registered now (and waited for); one that cannot be registered stops the hook.
function Confirm-Provider([string] $Subscription, [string] $Label, [string] $Namespace) {
    $state = az provider show --namespace $Namespace --subscription $Subscription --query registrationState --output tsv 2>$null
    if ($LASTEXITCODE -ne 0) { $state = 'unknown' }
    if ($state -eq 'Registered') { Write-Log "resource provider ${Namespace}: registered in the $Label (checked)"; return }
    Write-Log "resource provider $Namespace is $state in the $Label; registering it (az provider register --wait)"
    az provider register --namespace $Namespace --subscription $Subscription --wait --output none
    if ($LASTEXITCODE -ne 0) {
        Stop-Hook "could not register resource provider $Namespace in subscription ${Subscription}: someone with Contributor there can run az provider register --namespace $Namespace --subscription $Subscription"
    }
    Write-Log "resource provider ${Namespace}: registered in the $Label"
}
$providers = @('Microsoft.Web', 'Microsoft.Storage', 'Microsoft.ManagedIdentity', 'Microsoft.Insights', 'Microsoft.OperationalInsights')
if ($networkMode -eq 'Private') {
    $providers += 'Microsoft.Network'
    # The app subnet is delegated to Microsoft.App/environments; no template resource names it.
    if ($plan -eq 'FlexConsumption') { $providers += 'Microsoft.App' }
}
foreach ($namespace in $providers) { Confirm-Provider $env:AZURE_SUBSCRIPTION_ID 'app subscription' $namespace }
Confirm-Provider $names.KeyVaultSubscription 'Key Vault subscription' 'Microsoft.EventGrid'

Set-AzdEnv 'TRUSTSYNC_HOSTING_PLAN_RESOLVED' $plan
Write-Log 'preprovision checks done'
