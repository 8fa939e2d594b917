# azd predeploy hook (Windows): see predeploy.sh, which this mirrors. Private network mode only:
# opens the app's scm site to the deployer's public address(es) alone (TRUSTSYNC_DEPLOYER_IP, or
# as https://api.ipify.org sees it), then turns the site's public network access on, so that
# `azd deploy` reaches it from outside the new virtual network. The postdeploy hook (or the next
# azd provision) closes it again.
. (Join-Path $PSScriptRoot 'common.ps1')

Import-AzdEnv
Assert-Vars @('AZURE_ENV_NAME', 'AZURE_SUBSCRIPTION_ID', 'AZURE_FUNCTION_APP_NAME', 'AZURE_FUNCTION_APP_ID')
if ((Get-EnvOrDefault 'TRUSTSYNC_NETWORK_MODE' 'Public') -ne 'Private') {
    Write-Log "public network mode: the app's deployment site is reachable as it is"
    exit 0
}
$null = Assert-Az

$addresses = Get-EnvOrDefault 'TRUSTSYNC_DEPLOYER_IP' ''
if (-not $addresses) {
    try {
        $addresses = (Invoke-RestMethod -Uri 'https://api.ipify.org' -TimeoutSec 20).ToString().Trim()
    } catch {
        Stop-Hook 'cannot find your public address (https://api.ipify.org did not answer): azd env set TRUSTSYNC_DEPLOYER_IP <address>'
    }
    Write-Log "your public address, as https://api.ipify.org sees it: $addresses (set TRUSTSYNC_DEPLOYER_IP if you leave through several)"
}

# One rule per address; a bare address becomes a /32 (IPv4) or /128 (IPv6) range.
$rules = @()
$priority = 100
foreach ($address in @($addresses -split '[,\s]+' | Where-Object { $_ })) {
    if ($address -cnotmatch '^[0-9A-Fa-f.:]+(/[0-9]+)?$') { Stop-Hook "TRUSTSYNC_DEPLOYER_IP: '$address' is not an IP address or CIDR range" }
    $range = if ($address -like '*/*') { $address } elseif ($address -like '*:*') { "$address/128" } elseif ($address -match '^\d+\.\d+\.\d+\.\d+$') { "$address/32" } else { Stop-Hook "TRUSTSYNC_DEPLOYER_IP: '$address' is not an IP address or CIDR range" }
    $rules += @{ ipAddress = $range; action = 'Allow'; priority = $priority; name = "azd-deployer-$priority"; description = 'azd deploy (predeploy hook); removed by the postdeploy hook' }
    $priority++
}

$api = 'api-version=2024-04-01'
$config = @{ properties = @{
        ipSecurityRestrictions = @(); ipSecurityRestrictionsDefaultAction = 'Deny'; scmIpSecurityRestrictionsUseMain = $false
        scmIpSecurityRestrictionsDefaultAction = 'Deny'; scmIpSecurityRestrictions = $rules
    }
} | ConvertTo-Json -Depth 5 -Compress
Write-Log "opening the deployment (scm) site of $($env:AZURE_FUNCTION_APP_NAME) to $addresses only; the app itself keeps denying public traffic"
az rest --method patch --url "$($env:AZURE_FUNCTION_APP_ID)/config/web?$api" --body $config --output none
if ($LASTEXITCODE -ne 0) { Stop-Hook "could not set the access restrictions of $($env:AZURE_FUNCTION_APP_NAME)" }
az rest --method patch --url "$($env:AZURE_FUNCTION_APP_ID)?$api" --body '{"properties":{"publicNetworkAccess":"Enabled"}}' --output none
if ($LASTEXITCODE -ne 0) { Stop-Hook "could not turn on public network access of $($env:AZURE_FUNCTION_APP_NAME) for the deployment" }
Write-Log 'deploying; the postdeploy hook closes public network access again (if the deployment fails: azd deploy again, or azd provision, closes it)'
