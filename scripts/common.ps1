# Shared by the azd hooks on Windows (PowerShell 7); dot-sourced, not run. Mirrors common.sh.
# Nothing here changes the caller's az context: every az call names its subscription explicitly.
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Write-Log([string] $Message) { Write-Host "[trustsync] $Message" }
function Stop-Hook([string] $Message) { [Console]::Error.WriteLine("[trustsync] ERROR: $Message"); exit 1 }

# azd exports the environment (.azure/<env>/.env, main.bicep outputs included) to hooks. When a
# hook is run by hand instead, read the same values from `azd env get-values`.
function Import-AzdEnv {
    if ($env:AZURE_ENV_NAME -and $env:AZURE_FUNCTION_APP_NAME) { return }
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

# The hooks deploy with the Azure CLI; it must be logged in to the cloud azd deployed to.
function Assert-Az {
    if (-not (Get-Command az -ErrorAction SilentlyContinue)) { Stop-Hook 'the Azure CLI (az) is required: https://aka.ms/azure-cli' }
    az account show --output none 2>$null
    if ($LASTEXITCODE -ne 0) { Stop-Hook 'az is not logged in: run az login (Azure China: az cloud set --name AzureChinaCloud first)' }
    $azCloud = az cloud show --query name --output tsv
    if ($env:AZURE_CLOUD -and $azCloud -ne $env:AZURE_CLOUD) {
        Stop-Hook "az is set to cloud $azCloud but azd deployed to $($env:AZURE_CLOUD): run az cloud set --name $($env:AZURE_CLOUD); az login"
    }
}

# Names shared by the hooks; deployment names are cut to ARM's 64 characters.
function Get-TrustSyncNames {
    $cut = { param([string] $s) if ($s.Length -gt 64) { $s.Substring(0, 64) } else { $s } }
    $topic = if ($env:TRUSTSYNC_EXISTING_SYSTEM_TOPIC) { $env:TRUSTSYNC_EXISTING_SYSTEM_TOPIC } else { "evgt-trustsync-$($env:AZURE_ENV_NAME)" }
    $kvSubscription = if ($env:TRUSTSYNC_KEYVAULT_SUBSCRIPTION_ID) { $env:TRUSTSYNC_KEYVAULT_SUBSCRIPTION_ID } else { $env:AZURE_SUBSCRIPTION_ID }
    [pscustomobject]@{
        AccessDeployment    = & $cut "trustsync-access-$($env:AZURE_ENV_NAME)"
        EventGridDeployment = & $cut "trustsync-eventgrid-$($env:AZURE_ENV_NAME)"
        EventSubscription   = "trustsync-$($env:AZURE_ENV_NAME)"
        SystemTopic         = $topic
        KeyVaultSubscription = $kvSubscription
    }
}

function Get-EnvOrDefault([string] $Name, [string] $Default) {
    $value = [Environment]::GetEnvironmentVariable($Name)
    if ($value) { $value } else { $Default }
}
