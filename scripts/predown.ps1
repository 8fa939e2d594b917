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

# Resource ids a deployment created (none when the deployment does not exist).
$groupIds = az deployment group show --name $names.EventGridDeployment --subscription $names.KeyVaultSubscription `
    --resource-group $names.SystemTopicGroup --query 'properties.outputResources[].id' --output tsv 2>$null
if ($LASTEXITCODE -ne 0) { $groupIds = @() }
$subIds = az deployment sub show --name $names.AccessDeployment --subscription $env:AZURE_SUBSCRIPTION_ID `
    --query 'properties.outputResources[].id' --output tsv 2>$null
if ($LASTEXITCODE -ne 0) { $subIds = @() }
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

# The deployment records themselves (history only).
az deployment group delete --name $names.EventGridDeployment --subscription $names.KeyVaultSubscription `
    --resource-group $names.SystemTopicGroup --output none 2>$null
az deployment sub delete --name $names.AccessDeployment --subscription $env:AZURE_SUBSCRIPTION_ID --output none 2>$null
$global:LASTEXITCODE = 0
Write-Log 'access outside the app resource group removed; azd down now deletes the app resource group'
