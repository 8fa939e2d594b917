#!/bin/sh
# azd postdeploy hook: the Event Grid subscription that delivers the vault's certificate events
# (new version, near expiry, expired) to the app (infra/eventgrid.bicep), deployed into the
# resource group of the vault's system topic as "trustsync-eventgrid-<env>". It filters by event
# type only: CERTIFICATE_NAMES, the app setting, is the one list of certificates.
# Public network mode: pushed to on_keyvault_event; the hook runs after `azd deploy` because Event
# Grid validates an AzureFunction endpoint when the subscription is written, so the function must
# exist first. Private network mode (TRUSTSYNC_EVENT_QUEUE_NAME set): written to the event queue,
# which on_keyvault_event_queue reads; and first of all, the app's public network access is turned
# off again and the deployer's scm rule removed, which the predeploy hook opened for `azd deploy`.
# Idempotent (PATCH and PUT of the same values).
set -eu
# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"

load_azd_env
require_vars AZURE_ENV_NAME AZURE_SUBSCRIPTION_ID AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME \
  AZURE_FUNCTION_APP_ID TRUSTSYNC_KEYVAULT_RESOURCE_GROUP TRUSTSYNC_DEADLETTER_STORAGE_ACCOUNT_ID \
  TRUSTSYNC_DEADLETTER_CONTAINER
require_az
trustsync_names

# Empty in public network mode (main.bicep output): Event Grid then pushes to on_keyvault_event.
event_queue=${TRUSTSYNC_EVENT_QUEUE_NAME:-}
if [ -n "$event_queue" ]; then
  target_function=on_keyvault_event_queue
else
  target_function=on_keyvault_event
fi

if [ "${TRUSTSYNC_NETWORK_MODE:-Public}" = Private ]; then
  # Closed before anything else, so a failure below leaves it closed; the package is in place.
  api="api-version=2024-04-01"
  az rest --method patch --url "$AZURE_FUNCTION_APP_ID?$api" \
    --body '{"properties":{"publicNetworkAccess":"Disabled"}}' \
    --output none || fail "could not turn off public network access of $AZURE_FUNCTION_APP_NAME: run azd hooks run postdeploy again, or azd provision"
  az rest --method patch --url "$AZURE_FUNCTION_APP_ID/config/web?$api" \
    --body '{"properties":{"scmIpSecurityRestrictions":[],"scmIpSecurityRestrictionsDefaultAction":"Deny"}}' \
    --output none || fail "could not remove the deployer's scm access rule of $AZURE_FUNCTION_APP_NAME: run azd hooks run postdeploy again, or azd provision"
  log "public network access of $AZURE_FUNCTION_APP_NAME is Disabled again (the deployer's scm rule removed)"
fi

# The host indexes the functions a little after the package lands; wait up to 30 polls.
poll_seconds=${TRUSTSYNC_POLL_SECONDS:-10}
log "waiting for $target_function to be indexed on $AZURE_FUNCTION_APP_NAME"
attempt=0
until az functionapp function show --subscription "$AZURE_SUBSCRIPTION_ID" \
  --resource-group "$AZURE_RESOURCE_GROUP" --name "$AZURE_FUNCTION_APP_NAME" \
  --function-name "$target_function" --output none 2>/dev/null; do
  attempt=$((attempt + 1))
  [ "$attempt" -lt 30 ] || fail "$target_function did not appear on $AZURE_FUNCTION_APP_NAME; check the deployment logs, then run: azd hooks run postdeploy"
  sleep "$poll_seconds"
done

log "deploying $eventgrid_deployment (event subscription $event_subscription on $system_topic)"
az deployment group create \
  --name "$eventgrid_deployment" \
  --subscription "$kv_subscription" \
  --resource-group "$system_topic_group" \
  --template-file infra/eventgrid.bicep \
  --parameters \
    "systemTopicName=$system_topic" \
    "functionAppId=$AZURE_FUNCTION_APP_ID" \
    "deadLetterStorageAccountId=$TRUSTSYNC_DEADLETTER_STORAGE_ACCOUNT_ID" \
    "deadLetterContainerName=$TRUSTSYNC_DEADLETTER_CONTAINER" \
    "eventSubscriptionName=$event_subscription" \
    "eventQueueName=$event_queue" \
  --output none

if [ -n "$event_queue" ]; then
  log "Event Grid delivers certificate events to queue $event_queue, read by on_keyvault_event_queue"
  log "the app's public network access is disabled: call resync from the virtual network (its private endpoint)"
else
  log "Event Grid delivers certificate events to on_keyvault_event"
fi
log "verify: POST ${AZURE_FUNCTION_APP_URL:-https://<app>}/api/resync with {\"certificates\": [\"<name>\"], \"dryRun\": true} and header x-functions-key"
