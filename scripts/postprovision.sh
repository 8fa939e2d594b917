#!/bin/sh
# azd postprovision hook: access to the EXISTING Key Vault and API Management service
# (infra/access.bicep), as its own subscription deployment "trustsync-access-<env>":
#   Key Vault Secrets User + Key Vault Reader for the app identity (vault, or each named
#   certificate), the Event Grid system topic of the vault (found, or created), the custom APIM
#   role assigned on the APIM service, dead-letter write access for the system topic identity,
#   and the dead-letter and delivery-failure alerts.
# A vault has at most one system topic, and several deployments (one per APIM service) may watch
# the same vault: the hook looks for the vault's topic first. Found and created by this
# environment: it stays ours. Found and anyone else's: it is only referenced, never part of this
# deployment's resources, so the predown hook cannot delete it. Not found: the deployment creates
# it. The choice is recorded in the azd environment (TRUSTSYNC_SYSTEM_TOPIC_*) for the next hooks.
# Idempotent: fixed deployment name, deterministic resource names, PUT semantics.
set -eu
# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"

load_azd_env
require_vars AZURE_ENV_NAME AZURE_SUBSCRIPTION_ID AZURE_LOCATION TRUSTSYNC_PRINCIPAL_ID \
  TRUSTSYNC_KEYVAULT_NAME TRUSTSYNC_KEYVAULT_RESOURCE_GROUP TRUSTSYNC_APIM_RESOURCE_ID \
  TRUSTSYNC_DEADLETTER_STORAGE_ACCOUNT_ID TRUSTSYNC_DEADLETTER_CONTAINER
require_az
trustsync_names

# The preprovision hook's choice must be what was provisioned. An azd that does not reload its
# environment after a hook passes the previous value; the next `azd provision` passes this one.
if [ -n "${TRUSTSYNC_HOSTING_PLAN_RESOLVED:-}" ] && [ -n "${TRUSTSYNC_HOSTING_PLAN_DEPLOYED:-}" ] &&
  [ "$TRUSTSYNC_HOSTING_PLAN_RESOLVED" != "$TRUSTSYNC_HOSTING_PLAN_DEPLOYED" ]; then
  fail "provisioned the $TRUSTSYNC_HOSTING_PLAN_DEPLOYED plan, but the preprovision hook chose $TRUSTSYNC_HOSTING_PLAN_RESOLVED: this azd did not reload the environment after the hook; run azd provision again (or update azd)"
fi

log "checking Key Vault $TRUSTSYNC_KEYVAULT_NAME"
vault=$(az keyvault show --name "$TRUSTSYNC_KEYVAULT_NAME" \
  --resource-group "$TRUSTSYNC_KEYVAULT_RESOURCE_GROUP" --subscription "$kv_subscription" \
  --query "[properties.enableRbacAuthorization, location, id]" --output tsv) ||
  fail "cannot read Key Vault $TRUSTSYNC_KEYVAULT_NAME in $TRUSTSYNC_KEYVAULT_RESOURCE_GROUP (subscription $kv_subscription)"
rbac=$(printf '%s\n' "$vault" | sed -n 1p)
vault_location=$(printf '%s\n' "$vault" | sed -n 2p)
vault_id=$(printf '%s\n' "$vault" | sed -n 3p)
# Role assignments do nothing on a vault that still uses access policies.
[ "$rbac" = "true" ] || fail "Key Vault $TRUSTSYNC_KEYVAULT_NAME uses access policies; switch it to the Azure RBAC permission model (properties.enableRbacAuthorization = true) first"

# --- the vault's system topic ---------------------------------------------------------------------
existing_topic=''
existing_topic_group=''
if [ -n "${TRUSTSYNC_EXISTING_SYSTEM_TOPIC:-}" ]; then
  existing_topic=$TRUSTSYNC_EXISTING_SYSTEM_TOPIC
  existing_topic_group=${TRUSTSYNC_EXISTING_SYSTEM_TOPIC_RESOURCE_GROUP:-$TRUSTSYNC_KEYVAULT_RESOURCE_GROUP}
  topic_identity=$(az eventgrid system-topic show --name "$existing_topic" --resource-group "$existing_topic_group" \
    --subscription "$kv_subscription" --query "identity.type" --output tsv) ||
    fail "cannot read system topic $existing_topic in $existing_topic_group (TRUSTSYNC_EXISTING_SYSTEM_TOPIC)"
  log "using the system topic named in TRUSTSYNC_EXISTING_SYSTEM_TOPIC: $existing_topic"
else
  topics=$(az eventgrid system-topic list --subscription "$kv_subscription" \
    --query "[].[source, name, resourceGroup, tags.\"azd-env-name\", identity.type]" --output tsv) ||
    fail "cannot list the Event Grid system topics of subscription $kv_subscription"
  found=''
  # Tabs become '|' first: a tab is white space to read, so an empty field (no tag) would vanish.
  while IFS='|' read -r source name group env_tag identity_type; do
    if [ -n "$source" ] && [ "$(lower "$source")" = "$(lower "$vault_id")" ]; then
      found=$name
      found_group=$group
      found_env=$env_tag
      topic_identity=$identity_type
    fi
  done <<EOF
$(printf '%s\n' "$topics" | tr '\t' '|')
EOF
  if [ -z "$found" ]; then
    log "Key Vault $TRUSTSYNC_KEYVAULT_NAME has no Event Grid system topic; creating $new_system_topic"
  elif [ "$found" = "$new_system_topic" ] && [ "$found_env" = "$AZURE_ENV_NAME" ]; then
    log "system topic $found was created by this environment; it stays part of $access_deployment"
  else
    existing_topic=$found
    existing_topic_group=$found_group
    log "Key Vault $TRUSTSYNC_KEYVAULT_NAME already has system topic $found (resource group $found_group); subscribing to it, never deleting it"
  fi
fi
if [ -n "$existing_topic" ]; then
  # Dead letters are written with the topic's system-assigned identity.
  case $topic_identity in
    *SystemAssigned*) ;;
    *) fail "system topic $existing_topic has no system-assigned identity, which dead-lettering uses; its owner can add one: az eventgrid system-topic update --name $existing_topic --resource-group $existing_topic_group --subscription $kv_subscription --identity systemassigned" ;;
  esac
  azd_env_set TRUSTSYNC_SYSTEM_TOPIC_NAME "$existing_topic"
  azd_env_set TRUSTSYNC_SYSTEM_TOPIC_RESOURCE_GROUP "$existing_topic_group"
  azd_env_set TRUSTSYNC_SYSTEM_TOPIC_OWNED false
else
  azd_env_set TRUSTSYNC_SYSTEM_TOPIC_NAME "$new_system_topic"
  azd_env_set TRUSTSYNC_SYSTEM_TOPIC_RESOURCE_GROUP "$TRUSTSYNC_KEYVAULT_RESOURCE_GROUP"
  azd_env_set TRUSTSYNC_SYSTEM_TOPIC_OWNED true
fi

log "deploying $access_deployment (Key Vault and APIM access, Event Grid system topic, delivery alerts)"
az deployment sub create \
  --name "$access_deployment" \
  --subscription "$AZURE_SUBSCRIPTION_ID" \
  --location "$AZURE_LOCATION" \
  --template-file infra/access.bicep \
  --parameters \
    "environmentName=$AZURE_ENV_NAME" \
    "principalId=$TRUSTSYNC_PRINCIPAL_ID" \
    "keyVaultName=$TRUSTSYNC_KEYVAULT_NAME" \
    "keyVaultLocation=$vault_location" \
    "keyVaultResourceGroupName=$TRUSTSYNC_KEYVAULT_RESOURCE_GROUP" \
    "keyVaultSubscriptionId=$kv_subscription" \
    "apimResourceId=$TRUSTSYNC_APIM_RESOURCE_ID" \
    "certificateNames=${TRUSTSYNC_CERTIFICATE_NAMES:-*}" \
    "trustBundles=${TRUSTSYNC_TRUST_BUNDLES:-}" \
    "caStore=${TRUSTSYNC_CA_STORE:-off}" \
    "backendTls=${TRUSTSYNC_BACKEND_TLS:-off}" \
    "scopeKeyVaultRolesToObjects=${TRUSTSYNC_SCOPE_KEYVAULT_ROLES_TO_OBJECTS:-true}" \
    "existingSystemTopicName=$existing_topic" \
    "existingSystemTopicResourceGroup=$existing_topic_group" \
    "newSystemTopicName=$new_system_topic" \
    "eventSubscriptionName=$event_subscription" \
    "actionGroupId=${TRUSTSYNC_ACTION_GROUP_ID:-}" \
    "deadLetterStorageAccountId=$TRUSTSYNC_DEADLETTER_STORAGE_ACCOUNT_ID" \
    "deadLetterContainerName=$TRUSTSYNC_DEADLETTER_CONTAINER" \
    "eventQueueName=${TRUSTSYNC_EVENT_QUEUE_NAME:-}" \
  --output none

log "access granted; role assignments can take a few minutes to take effect"
