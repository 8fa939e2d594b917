#!/bin/sh
# azd preprovision hook: decides what `azd provision` deploys and checks, before anything is
# created, that you may create it.
#   1. Hosting plan. TRUSTSYNC_HOSTING_PLAN = Auto (default) takes Flex Consumption when the region
#      offers it (az functionapp list-flexconsumption-locations, asked of the cloud az is logged in
#      to) and the Dedicated plan otherwise, including when the offer cannot be read. An explicit
#      FlexConsumption in a region without it fails here rather than halfway through provision.
#      The choice is stored as TRUSTSYNC_HOSTING_PLAN_RESOLVED, which main.parameters.json passes
#      to main.bicep, and logged with its reason.
#   2. Permissions. The hooks deploy into the Key Vault and API Management resource groups; each
#      deployment there needs Microsoft.Resources/deployments/write besides the roles it grants.
#      Missing actions are listed per scope and the hook stops (TRUSTSYNC_SKIP_PERMISSION_CHECK=true
#      skips this, e.g. when access comes from a just-in-time elevation az cannot see yet).
set -eu
# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"

load_azd_env AZURE_LOCATION
require_vars AZURE_ENV_NAME AZURE_SUBSCRIPTION_ID AZURE_LOCATION TRUSTSYNC_KEYVAULT_RESOURCE_GROUP \
  TRUSTSYNC_APIM_RESOURCE_ID
require_az
trustsync_names

# --- 1. hosting plan ---------------------------------------------------------------------------
requested=${TRUSTSYNC_HOSTING_PLAN:-Auto}
case $requested in
  Auto | FlexConsumption | Dedicated) ;;
  *) fail "TRUSTSYNC_HOSTING_PLAN is '$requested'; use Auto, FlexConsumption or Dedicated" ;;
esac
region=$(lower "$AZURE_LOCATION" | tr -d ' ')
offered=unknown
if flex_regions=$(az functionapp list-flexconsumption-locations --subscription "$AZURE_SUBSCRIPTION_ID" \
  --query "[].name" --output tsv 2>/dev/null); then
  offered=no
  # Names may come as display names ("West Europe") or region names (westeurope).
  while IFS= read -r name; do
    if [ -n "$name" ] && [ "$(lower "$name" | tr -d ' ')" = "$region" ]; then
      offered=yes
    fi
  done <<EOF
$flex_regions
EOF
fi
case $requested:$offered in
  Auto:yes)
    plan=FlexConsumption
    reason="$AZURE_LOCATION offers Flex Consumption" ;;
  Auto:no)
    plan=Dedicated
    reason="$AZURE_LOCATION does not offer Flex Consumption; a Linux App Service plan (${TRUSTSYNC_DEDICATED_PLAN_SKU:-B1}) instead" ;;
  Auto:unknown)
    plan=Dedicated
    reason="the Flex Consumption regions could not be listed (az functionapp list-flexconsumption-locations failed: az too old, or the cloud has no such offer); a Linux App Service plan (${TRUSTSYNC_DEDICATED_PLAN_SKU:-B1}) instead" ;;
  FlexConsumption:unknown)
    plan=FlexConsumption
    reason="TRUSTSYNC_HOSTING_PLAN=FlexConsumption; the region offer could not be read to confirm it" ;;
  FlexConsumption:no)
    fail "TRUSTSYNC_HOSTING_PLAN is FlexConsumption but $AZURE_LOCATION does not offer it (az functionapp list-flexconsumption-locations); choose another region or TRUSTSYNC_HOSTING_PLAN=Dedicated" ;;
  *)
    plan=$requested
    reason="TRUSTSYNC_HOSTING_PLAN=$requested" ;;
esac
azd_env_set TRUSTSYNC_HOSTING_PLAN_RESOLVED "$plan"
log "hosting plan: $plan ($reason)"

# --- 2. permissions ----------------------------------------------------------------------------
if [ "${TRUSTSYNC_SKIP_PERMISSION_CHECK:-false}" = true ]; then
  log "permission check skipped (TRUSTSYNC_SKIP_PERMISSION_CHECK=true)"
  exit 0
fi
apim_group_scope=$(printf '%s' "$TRUSTSYNC_APIM_RESOURCE_ID" | sed 's#/providers/.*##')
vault_group_scope="/subscriptions/$kv_subscription/resourceGroups/$TRUSTSYNC_KEYVAULT_RESOURCE_GROUP"
log "checking your permissions on the app subscription, the Key Vault and the APIM resource groups"
# azd creates the app resource group and deploys into it; the postprovision hook runs a
# subscription deployment and assigns roles in the app resource group.
check_permissions "app subscription" "/subscriptions/$AZURE_SUBSCRIPTION_ID" \
  Microsoft.Resources/subscriptions/resourceGroups/write \
  Microsoft.Resources/deployments/write \
  Microsoft.Authorization/roleAssignments/write
# Key Vault roles, the system topic and the event subscription (postprovision, postdeploy).
vault_actions="Microsoft.Resources/deployments/write Microsoft.Authorization/roleAssignments/write Microsoft.EventGrid/systemTopics/write Microsoft.EventGrid/systemTopics/eventSubscriptions/write"
if [ "${TRUSTSYNC_NETWORK_MODE:-Public}" = Private ] && [ "${TRUSTSYNC_KEYVAULT_PRIVATE_ENDPOINT_MANUAL_APPROVAL:-false}" != true ]; then
  # Approving the vault's private endpoint connection as it is created.
  vault_actions="$vault_actions Microsoft.KeyVault/vaults/privateEndpointConnectionsApproval/action"
fi
# shellcheck disable=SC2086 # one word per action
check_permissions "Key Vault resource group" "$vault_group_scope" $vault_actions
# The custom role and its assignment, deployed as a deployment in that resource group.
check_permissions "APIM resource group" "$apim_group_scope" \
  Microsoft.Resources/deployments/write \
  Microsoft.Authorization/roleDefinitions/write \
  Microsoft.Authorization/roleAssignments/write
if [ -n "$missing_permissions" ]; then
  fail "you lack permissions the deployment needs (README: Deploy, Prerequisites):$missing_permissions"
fi
log "permissions: every action the deployment needs is granted"
