# azd predown hook (Windows): see predown.sh, which this mirrors.
# Deletes exactly the resources the two hook deployments created outside the app resource group
# (event subscription, role assignments, custom APIM role, the system topic if the hook created
# it and no other event subscription uses it); never the Key Vault, the APIM service or their
# resource groups. Safe to re-run.
. (Join-Path $PSScriptRoot 'common.ps1')

Import-AzdEnv
Assert-Vars @('AZURE_ENV_NAME', 'AZURE_SUBSCRIPTION_ID', 'TRUSTSYNC_KEYVAULT_RESOURCE_GROUP', 'TRUSTSYNC_APIM_RESOURCE_ID')
$null = Assert-Az
$names = Get-TrustSyncNames

# Resource ids a deployment created: none when the deployment does not exist (nothing to remove).
# A deployment that exists but cannot be read is added to $unread: its resources are not removed,
# and the hook says so instead of reporting them removed.
$unread = @()
function Read-DeploymentIds([string] $Label, [scriptblock] $Show) {
    $output = & $Show 2>&1
    if ($LASTEXITCODE -eq 0) { return @($output | Where-Object { $_ -isnot [System.Management.Automation.ErrorRecord] }) }
    $errorText = (@($output | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] }) | ForEach-Object { "$_" }) -join "`n"
    if ($errorText -notmatch 'DeploymentNotFound|could not be found|ResourceGroupNotFound') {
        $script:unread += "  ${Label}: $((($errorText -split "`n")[0]) -replace '^ERROR: ', '')"
    }
    return @()
}
$groupIds = Read-DeploymentIds $names.EventGridDeployment {
    az deployment group show --name $names.EventGridDeployment --subscription $names.KeyVaultSubscription `
        --resource-group $names.SystemTopicGroup --query 'properties.outputResources[].id' --output tsv
}
$subIds = Read-DeploymentIds $names.AccessDeployment {
    az deployment sub show --name $names.AccessDeployment --subscription $env:AZURE_SUBSCRIPTION_ID `
        --query 'properties.outputResources[].id' --output tsv
}
$allIds = @($groupIds) + @($subIds)

# A custom role is deleted through its assignable scope: the APIM resource group.
$apimScope = $env:TRUSTSYNC_APIM_RESOURCE_ID -replace '/providers/.*$', ''

function Remove-Matching([string] $Pattern, [string] $Excluded = '') {
    foreach ($id in $allIds) {
        if (-not $id) { continue }
        $lower = $id.ToLowerInvariant()
        if (-not ($lower -like $Pattern)) { continue }
        if ($Excluded -and ($lower -like $Excluded)) { continue }
        if ($lower -like '*/providers/microsoft.eventgrid/systemtopics/*' -and
            $lower -notlike '*/eventsubscriptions/*') {
            # Ours, but maybe shared since: other deployments on this vault subscribe to it too.
            $parts = $id -split '/'
            $others = az eventgrid system-topic event-subscription list --subscription $parts[2] `
                --resource-group $parts[4] --system-topic-name $parts[8] --query '[].name' --output tsv
            if ($LASTEXITCODE -ne 0) { Write-Log "kept system topic $($parts[8]): its event subscriptions could not be listed"; continue }
            if ($others) { Write-Log "kept system topic $($parts[8]): still used by event subscriptions $(@($others) -join ' ')"; continue }
        }
        Write-Log "deleting $id"
        if ($lower -like '*/providers/microsoft.authorization/roleassignments/*') {
            az role assignment delete --ids $id --output none
        }
        elseif ($lower -like '*/providers/microsoft.authorization/roledefinitions/*') {
            az role definition delete --name ($id -split '/')[-1] --scope $apimScope --output none
        }
        else {
            az resource delete --ids $id --output none
        }
        if ($LASTEXITCODE -ne 0) { Write-Log "could not delete $id (already gone?)" }
    }
}

# Dependency order: subscriptions, assignments, then the role they use, then topics.
Remove-Matching '*/providers/microsoft.eventgrid/systemtopics/*/eventsubscriptions/*'
Remove-Matching '*/providers/microsoft.authorization/roleassignments/*'
Remove-Matching '*/providers/microsoft.authorization/roledefinitions/*'
Remove-Matching '*/providers/microsoft.eventgrid/systemtopics/*' '*/eventsubscriptions/*'

# A deployment that could not be read keeps its record: it lists what is left to remove.
if ($unread.Count -gt 0) {
    Stop-Hook ("could not read these deployments, so what they created outside the app resource group was NOT removed:`n" + ($unread -join "`n") +
        "`nfix az (az login, the cloud) and run azd down again, or remove their resources by hand (docs/deploy.md, Tear down)")
}
# The deployment records themselves (history only).
az deployment group delete --name $names.EventGridDeployment --subscription $names.KeyVaultSubscription `
    --resource-group $names.SystemTopicGroup --output none 2>$null
az deployment sub delete --name $names.AccessDeployment --subscription $env:AZURE_SUBSCRIPTION_ID --output none 2>$null
$global:LASTEXITCODE = 0
Write-Log 'access outside the app resource group removed; azd down now deletes the app resource group'
