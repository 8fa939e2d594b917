#!/bin/sh
# azd postprovision hook: access to the EXISTING Key Vault and API Management service
# (infra/access.bicep), as its own subscription deployment "trustsync-access-<env>":
#   Key Vault Secrets User + Key Vault Reader for the app identity (vault, or each named
#   certificate), the Event Grid system topic of the vault, the custom APIM role assigned on the
#   APIM service, and dead-letter write access for the system topic identity.
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

log "checking Key Vault $TRUSTSYNC_KEYVAULT_NAME"
vault=$(az keyvault show --name "$TRUSTSYNC_KEYVAULT_NAME" \
  --resource-group "$TRUSTSYNC_KEYVAULT_RESOURCE_GROUP" --subscription "$kv_subscription" \
  --query "[properties.enableRbacAuthorization, location]" --output tsv) ||
  fail "cannot read Key Vault $TRUSTSYNC_KEYVAULT_NAME in $TRUSTSYNC_KEYVAULT_RESOURCE_GROUP (subscription $kv_subscription)"
rbac=$(printf '%s\n' "$vault" | sed -n 1p)
vault_location=$(printf '%s\n' "$vault" | sed -n 2p)
# Role assignments do nothing on a vault that still uses access policies.
[ "$rbac" = "true" ] || fail "Key Vault $TRUSTSYNC_KEYVAULT_NAME uses access policies; switch it to the Azure RBAC permission model (properties.enableRbacAuthorization = true) first"

log "deploying $access_deployment (Key Vault and APIM access, Event Grid system topic)"
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
    "scopeKeyVaultRolesToObjects=${TRUSTSYNC_SCOPE_KEYVAULT_ROLES_TO_OBJECTS:-true}" \
    "existingSystemTopicName=${TRUSTSYNC_EXISTING_SYSTEM_TOPIC:-}" \
    "deadLetterStorageAccountId=$TRUSTSYNC_DEADLETTER_STORAGE_ACCOUNT_ID" \
    "deadLetterContainerName=$TRUSTSYNC_DEADLETTER_CONTAINER" \
  --output none

log "access granted; role assignments can take a few minutes to take effect"
