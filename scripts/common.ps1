# Shared by the azd hooks on Windows (PowerShell 7); dot-sourced, not run. Mirrors common.sh.
# Nothing here changes the caller's az context: every az call names its subscription explicitly.
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Write-Log([string] $Message) { Write-Host "[trustsync] $Message" }
function Stop-Hook([string] $Message) { [Console]::Error.WriteLine("[trustsync] ERROR: $Message"); exit 1 }

# azd exports the environment (.azure/<env>/.env, main.bicep outputs included) to hooks. When a
# hook is run by hand instead, read the same values from `azd env get-values`. $Marker names a
# variable the hook needs that only azd sets (default: a main.bicep output).
function Import-AzdEnv([string] $Marker = 'AZURE_FUNCTION_APP_NAME') {
    if ($env:AZURE_ENV_NAME -and [Environment]::GetEnvironmentVariable($Marker)) { return }
    if (-not (Get-Command azd -ErrorAction SilentlyContinue)) {
        Stop-Hook 'run this through azd (azd up / azd hooks run), or install azd'
    }
    $lines = azd env get-values
    if ($LASTEXITCODE -ne 0) { Stop-Hook 'azd env get-values failed: select an environment with azd env select' }
    foreach ($line in $lines) {
        # Lines are KEY="VALUE"; only well-formed keys are set, values are never evaluated.
        if ($line -match '^([A-Za-z_][A-Za-z0-9_]*)="?(.*?)"?$') {
            Set-Item -Path "env:$($Matches[1])" -Value $Matches[2]
        }
    }
}

function Assert-Vars([string[]] $Names) {
    foreach ($name in $Names) {
        if (-not [Environment]::GetEnvironmentVariable($name)) {
            Stop-Hook "$name is not set in the azd environment (run azd provision first)"
        }
    }
}

# The cloud an Azure region belongs to: Azure China regions are china*, Azure US Government
# regions usgov* and usdod*, every other region is the public cloud's.
function Get-CloudOfRegion([string] $Region) {
    $name = $Region.ToLowerInvariant().Replace(' ', '')
    if ($name -like 'china*') { return 'AzureChinaCloud' }
    if ($name -like 'usgov*' -or $name -like 'usdod*') { return 'AzureUSGovernment' }
    return 'AzureCloud'
}

# The hooks deploy with the Azure CLI; it must be logged in to the cloud azd deploys to. That cloud
# is AZURE_CLOUD once a provision has run (a main.bicep output); on the first run it is the cloud of
# AZURE_LOCATION. Returns the cloud az is logged in to.
function Assert-Az {
    if (-not (Get-Command az -ErrorAction SilentlyContinue)) { Stop-Hook 'the Azure CLI (az) is required: https://aka.ms/azure-cli' }
    az account show --output none 2>$null
    if ($LASTEXITCODE -ne 0) { Stop-Hook 'az is not logged in: run az login (Azure China: az cloud set --name AzureChinaCloud first)' }
    $azCloud = az cloud show --query name --output tsv
    if ($LASTEXITCODE -ne 0) { Stop-Hook 'az cloud show failed: cannot tell which cloud az is logged in to' }
    if ($env:AZURE_CLOUD) {
        $target = $env:AZURE_CLOUD
        $reason = "azd deployed to $($env:AZURE_CLOUD)"
    } elseif ($env:AZURE_LOCATION) {
        $target = Get-CloudOfRegion $env:AZURE_LOCATION
        $reason = "$($env:AZURE_LOCATION) is a region of $target"
    } else {
        return $azCloud
    }
    if ($azCloud -ne $target) {
        Stop-Hook "az is set to cloud $azCloud but ${reason}: run az cloud set --name $target && az login (and azd config set cloud.name $target && azd auth login)"
    }
    return $azCloud
}

# Records a value in the azd environment (.azure/<env>/.env) for the later hooks, and sets it here.
function Set-AzdEnv([string] $Name, [string] $Value) {
    if (Get-Command azd -ErrorAction SilentlyContinue) {
        azd env set $Name $Value | Out-Null
        if ($LASTEXITCODE -ne 0) { Stop-Hook "azd env set $Name failed" }
    }
    Set-Item -Path "env:$Name" -Value $Value
}

# Names shared by the hooks. main.bicep builds every name from the environment name so that each
# fits its limit (azd stores them as outputs); an environment provisioned before those outputs
# existed falls back to the names it was given then.
function Get-TrustSyncNames {
    $cut = { param([string] $s) if ($s.Length -gt 64) { $s.Substring(0, 64) } else { $s } }
    $envName = $env:AZURE_ENV_NAME
    $newTopic = Get-EnvOrDefault 'TRUSTSYNC_NEW_SYSTEM_TOPIC_NAME' "evgt-trustsync-$envName"
    $kvGroup = Get-EnvOrDefault 'TRUSTSYNC_KEYVAULT_RESOURCE_GROUP' ''
    [pscustomobject]@{
        AccessDeployment     = Get-EnvOrDefault 'TRUSTSYNC_ACCESS_DEPLOYMENT_NAME' (& $cut "trustsync-access-$envName")
        EventGridDeployment  = Get-EnvOrDefault 'TRUSTSYNC_EVENTGRID_DEPLOYMENT_NAME' (& $cut "trustsync-eventgrid-$envName")
        EventSubscription    = Get-EnvOrDefault 'TRUSTSYNC_EVENT_SUBSCRIPTION_NAME' "trustsync-$envName"
        NewSystemTopic       = $newTopic
        KeyVaultSubscription = Get-EnvOrDefault 'TRUSTSYNC_KEYVAULT_SUBSCRIPTION_ID' $env:AZURE_SUBSCRIPTION_ID
        # The system topic the postprovision hook resolved (the vault's existing one, or ours).
        SystemTopic          = Get-EnvOrDefault 'TRUSTSYNC_SYSTEM_TOPIC_NAME' (Get-EnvOrDefault 'TRUSTSYNC_EXISTING_SYSTEM_TOPIC' $newTopic)
        SystemTopicGroup     = Get-EnvOrDefault 'TRUSTSYNC_SYSTEM_TOPIC_RESOURCE_GROUP' (Get-EnvOrDefault 'TRUSTSYNC_EXISTING_SYSTEM_TOPIC_RESOURCE_GROUP' $kvGroup)
    }
}

# True when a permission entry grants $Action and does not exclude it. ARM matches
# case-insensitively and '*' spans any characters, as -like does.
function Test-ActionAllowed([string] $Action, [object[]] $Permissions) {
    foreach ($entry in $Permissions) {
        $granted = @($entry.actions | Where-Object { $Action -like $_ }).Count -gt 0
        $excluded = @($entry.notActions | Where-Object { $Action -like $_ }).Count -gt 0
        if ($granted -and -not $excluded) { return $true }
    }
    return $false
}

# Reads what the signed-in identity may do at $Scope (Microsoft.Authorization/permissions) and
# returns the lines for each of $Actions it may not do. A scope whose permissions cannot be read is
# added to $script:UncheckedPermissions: a check that read nothing proves nothing, so the caller
# must never report it as granted.
$script:UncheckedPermissions = @()
function Get-MissingPermissions([string] $Label, [string] $Scope, [string[]] $Actions) {
    $json = az rest --method get `
        --url "$Scope/providers/Microsoft.Authorization/permissions?api-version=2022-04-01" `
        --query 'value[]' --output json 2>$null
    if ($LASTEXITCODE -ne 0) {
        Write-Log "could not read your permissions on $Label ($Scope)"
        $script:UncheckedPermissions += "  $Label ($Scope)"
        return @()
    }
    $permissions = @($json | ConvertFrom-Json)
    return @($Actions | Where-Object { -not (Test-ActionAllowed $_ $permissions) } | ForEach-Object { "  $Label ($Scope): $_" })
}

function Get-EnvOrDefault([string] $Name, [string] $Default) {
    $value = [Environment]::GetEnvironmentVariable($Name)
    if ($value) { $value } else { $Default }
}
