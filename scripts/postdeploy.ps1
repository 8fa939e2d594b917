# azd postdeploy hook (Windows): see postdeploy.sh, which this mirrors.
# Deploys infra/eventgrid.bicep (the event subscription to on_keyvault_event, or in private network
# mode to the event queue that on_keyvault_event_queue reads; filtered by event type only) into the
# resource group of the vault's system topic once the function exists. In private network mode it
# first turns the app's public network access off again (opened by the predeploy hook). Idempotent.
. (Join-Path $PSScriptRoot 'common.ps1')

Import-AzdEnv
Assert-Vars @('AZURE_ENV_NAME', 'AZURE_SUBSCRIPTION_ID', 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME',
    'AZURE_FUNCTION_APP_ID', 'TRUSTSYNC_KEYVAULT_RESOURCE_GROUP', 'TRUSTSYNC_DEADLETTER_STORAGE_ACCOUNT_ID',
    'TRUSTSYNC_DEADLETTER_CONTAINER')
$null = Assert-Az
$names = Get-TrustSyncNames

# Empty in public network mode (main.bicep output): Event Grid then pushes to on_keyvault_event.
$eventQueue = Get-EnvOrDefault 'TRUSTSYNC_EVENT_QUEUE_NAME' ''
$targetFunction = if ($eventQueue) { 'on_keyvault_event_queue' } else { 'on_keyvault_event' }

if ((Get-EnvOrDefault 'TRUSTSYNC_NETWORK_MODE' 'Public') -eq 'Private') {
    # Closed before anything else (predeploy opened it for azd deploy), so a failure below leaves it closed.
    $api = 'api-version=2024-04-01'
    az rest --method patch --url "$($env:AZURE_FUNCTION_APP_ID)?$api" --body '{"properties":{"publicNetworkAccess":"Disabled"}}' --output none
    if ($LASTEXITCODE -ne 0) { Stop-Hook "could not turn off public network access of $($env:AZURE_FUNCTION_APP_NAME): run azd hooks run postdeploy again, or azd provision" }
    az rest --method patch --url "$($env:AZURE_FUNCTION_APP_ID)/config/web?$api" `
        --body '{"properties":{"scmIpSecurityRestrictions":[],"scmIpSecurityRestrictionsDefaultAction":"Deny"}}' --output none
    if ($LASTEXITCODE -ne 0) { Stop-Hook "could not remove the deployer's scm access rule of $($env:AZURE_FUNCTION_APP_NAME): run azd hooks run postdeploy again, or azd provision" }
    Write-Log "public network access of $($env:AZURE_FUNCTION_APP_NAME) is Disabled again (the deployer's scm rule removed)"
}

# The host indexes the functions a little after the package lands; wait up to 30 polls.
$pollSeconds = [int](Get-EnvOrDefault 'TRUSTSYNC_POLL_SECONDS' '10')
Write-Log "waiting for $targetFunction to be indexed on $($env:AZURE_FUNCTION_APP_NAME)"
$indexed = $false
for ($attempt = 1; $attempt -le 30; $attempt++) {
    az functionapp function show --subscription $env:AZURE_SUBSCRIPTION_ID `
        --resource-group $env:AZURE_RESOURCE_GROUP --name $env:AZURE_FUNCTION_APP_NAME `
        --function-name $targetFunction --output none 2>$null
    if ($LASTEXITCODE -eq 0) { $indexed = $true; break }
    Start-Sleep -Seconds $pollSeconds
}
if (-not $indexed) {
    Stop-Hook "$targetFunction did not appear on $($env:AZURE_FUNCTION_APP_NAME); check the deployment logs, then run: azd hooks run postdeploy"
}

Write-Log "deploying $($names.EventGridDeployment) (event subscription $($names.EventSubscription) on $($names.SystemTopic))"
az deployment group create `
    --name $names.EventGridDeployment `
    --subscription $names.KeyVaultSubscription `
    --resource-group $names.SystemTopicGroup `
    --template-file infra/eventgrid.bicep `
    --parameters `
    "systemTopicName=$($names.SystemTopic)" `
    "functionAppId=$($env:AZURE_FUNCTION_APP_ID)" `
    "deadLetterStorageAccountId=$($env:TRUSTSYNC_DEADLETTER_STORAGE_ACCOUNT_ID)" `
    "deadLetterContainerName=$($env:TRUSTSYNC_DEADLETTER_CONTAINER)" `
    "eventSubscriptionName=$($names.EventSubscription)" `
    "eventQueueName=$eventQueue" `
    --output none
if ($LASTEXITCODE -ne 0) { Stop-Hook "deployment $($names.EventGridDeployment) failed" }

if ($eventQueue) {
    Write-Log "Event Grid delivers certificate events to queue $eventQueue, read by on_keyvault_event_queue"
    Write-Log "the app's public network access is disabled: call resync from the virtual network (its private endpoint)"
} else {
    Write-Log 'Event Grid delivers certificate events to on_keyvault_event'
}
Write-Log "verify: POST $(Get-EnvOrDefault 'AZURE_FUNCTION_APP_URL' 'https://<app>')/api/resync with {`"certificates`": [`"<name>`"], `"dryRun`": true} and header x-functions-key"
