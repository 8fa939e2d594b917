#!/bin/sh
# azd preprovision hook: decides what `azd provision` deploys and checks, before anything is
# created, that it can be created. Every check prints what it checked, or "could not check" and
# why; nothing is reported as fine that was not read.
#   1. Environment name: azd allows letters, digits, '-', '_', '.', '(' and ')'; Event Grid and
#      resource group names allow fewer, so main.bicep builds names from a normalised token. A
#      name outside azd's own rules (an edited .env) is refused, with the allowed characters.
#   2. Cloud and region: az must be logged in to the cloud of AZURE_LOCATION (Azure China regions
#      are china*, US Government usgov*/usdod*) on the first run, before AZURE_CLOUD exists, and
#      the region must be one of the subscription's (az account list-locations).
#   3. Hosting plan. TRUSTSYNC_HOSTING_PLAN = Auto (default) takes Flex Consumption when the region
#      offers it (az functionapp list-flexconsumption-locations) and the Dedicated plan otherwise,
#      including when the offer cannot be read. An explicit FlexConsumption in a region without it
#      fails here. The choice is stored as TRUSTSYNC_HOSTING_PLAN_RESOLVED (main.parameters.json).
#   4. The Key Vault: it exists and uses the Azure RBAC permission model; each certificate named in
#      TRUSTSYNC_CERTIFICATE_NAMES exists ("checked", or "could not check: <why>" when the vault's
#      data plane is out of reach from here, e.g. a vault behind a private endpoint); each secret
#      named in TRUSTSYNC_TRUST_BUNDLES is a valid name, not also a named certificate, and exists
#      (its versions' metadata, never its value), since each gets its own role assignment.
#   5. Permissions on every scope the deployment writes to: the app subscription, the Key Vault,
#      APIM and (when the vault already has one elsewhere) system topic resource groups, and the
#      private DNS zones you pass. Each deployment there also needs
#      Microsoft.Resources/deployments/write. A scope whose permissions cannot be read stops the
#      hook; TRUSTSYNC_SKIP_PERMISSION_CHECK=true skips this check and says so.
#   6. Resource providers: registered, or registered now. ARM registers only the providers whose
#      types a template deploys; Flex Consumption in private mode also needs Microsoft.App for its
#      subnet delegation (Microsoft.App/environments), which no template resource names.
set -eu
# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"

load_azd_env AZURE_LOCATION
require_vars AZURE_ENV_NAME AZURE_SUBSCRIPTION_ID AZURE_LOCATION
# azd asks for AZURE_SUBSCRIPTION_ID and AZURE_LOCATION itself; the TRUSTSYNC_* values it would
# ask for only after this hook, so they are named here with the command that sets them.
for name in TRUSTSYNC_KEYVAULT_NAME TRUSTSYNC_KEYVAULT_RESOURCE_GROUP TRUSTSYNC_APIM_RESOURCE_ID; do
  eval "value=\${$name:-}"
  # shellcheck disable=SC2154 # assigned by the eval above
  [ -n "$value" ] || fail "$name is not set: azd env set $name <value> (docs/deploy.md, step 2)"
done

# --- 1. environment name -------------------------------------------------------------------------
case $AZURE_ENV_NAME in
  *[!A-Za-z0-9_.\(\)-]*)
    fail "the azd environment name '$AZURE_ENV_NAME' has a character azd does not allow: use 1-64 letters, digits, '-', '_', '.', '(' or ')' (azd env new <name>)" ;;
esac
[ "${#AZURE_ENV_NAME}" -le 64 ] ||
  fail "the azd environment name '$AZURE_ENV_NAME' is longer than 64 characters: use 1-64 letters, digits, '-', '_', '.', '(' or ')'"
case $AZURE_ENV_NAME in
  *[!A-Za-z0-9-]*)
    log "environment name '$AZURE_ENV_NAME': Event Grid and resource group names take letters, digits and hyphens only, so names use '$(printf '%s' "$AZURE_ENV_NAME" | tr '_.()' '----')' followed by a short hash of the name" ;;
  *) log "environment name '$AZURE_ENV_NAME': used in resource names as it is" ;;
esac

# --- 2. cloud and region -------------------------------------------------------------------------
require_az
trustsync_names
log "cloud: az is logged in to $az_cloud, the cloud of $AZURE_LOCATION (checked)"
region=$(lower "$AZURE_LOCATION" | tr -d ' ')
if regions=$(az account list-locations --subscription "$AZURE_SUBSCRIPTION_ID" --query "[].name" --output tsv 2>/dev/null); then
  known=no
  while IFS= read -r name; do
    if [ -n "$name" ] && [ "$(lower "$name" | tr -d ' ')" = "$region" ]; then
      known=yes
    fi
  done <<EOF2
$regions
EOF2
  [ "$known" = yes ] ||
    fail "$AZURE_LOCATION is not a region of subscription $AZURE_SUBSCRIPTION_ID in $az_cloud (az account list-locations): azd env set AZURE_LOCATION <region>"
  log "region: $AZURE_LOCATION is a region of subscription $AZURE_SUBSCRIPTION_ID (checked)"
else
  log "region: could not check: the subscription's regions could not be listed (az account list-locations failed)"
fi

# --- 3. hosting plan -----------------------------------------------------------------------------
requested=${TRUSTSYNC_HOSTING_PLAN:-Auto}
case $requested in
  Auto | FlexConsumption | Dedicated) ;;
  *) fail "TRUSTSYNC_HOSTING_PLAN is '$requested'; use Auto, FlexConsumption or Dedicated" ;;
esac
offered=unknown
if flex_regions=$(az functionapp list-flexconsumption-locations --subscription "$AZURE_SUBSCRIPTION_ID" \
  --query "[].name" --output tsv 2>/dev/null); then
  offered=no
  # Names may come as display names ("West Europe") or region names (westeurope).
  while IFS= read -r name; do
    if [ -n "$name" ] && [ "$(lower "$name" | tr -d ' ')" = "$region" ]; then
      offered=yes
    fi
  done <<EOF2
$flex_regions
EOF2
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
network_mode=${TRUSTSYNC_NETWORK_MODE:-Public}
case $network_mode in
  Public | Private) ;;
  *) fail "TRUSTSYNC_NETWORK_MODE is '$network_mode'; use Public or Private" ;;
esac
log "hosting plan: $plan ($reason); network mode: $network_mode"

# --- 4. the Key Vault and the named certificates -------------------------------------------------
vault_name=$TRUSTSYNC_KEYVAULT_NAME
vault=$(az keyvault show --name "$vault_name" --resource-group "$TRUSTSYNC_KEYVAULT_RESOURCE_GROUP" \
  --subscription "$kv_subscription" --query "[properties.enableRbacAuthorization, location, id]" --output tsv 2>/dev/null) ||
  fail "cannot read Key Vault $vault_name in resource group $TRUSTSYNC_KEYVAULT_RESOURCE_GROUP (subscription $kv_subscription): check TRUSTSYNC_KEYVAULT_NAME, TRUSTSYNC_KEYVAULT_RESOURCE_GROUP and TRUSTSYNC_KEYVAULT_SUBSCRIPTION_ID, and that you may read the vault"
rbac=$(printf '%s\n' "$vault" | sed -n 1p)
vault_id=$(printf '%s\n' "$vault" | sed -n 3p)
# Role assignments do nothing on a vault that still uses access policies.
[ "$rbac" = true ] ||
  fail "Key Vault $vault_name uses access policies; switch it to the Azure RBAC permission model (properties.enableRbacAuthorization = true) first"
log "Key Vault $vault_name: Azure RBAC permission model (checked)"

certificate_names=$(printf '%s' "${TRUSTSYNC_CERTIFICATE_NAMES:-*}" | tr ',' ' ')
missing_certificates=''
if [ "$(printf '%s' "$certificate_names" | tr -d ' ')" = '*' ]; then
  log "certificates: * (every certificate in the vault; nothing to check by name)"
else
  set -f # a name is never a file pattern
  for name in $certificate_names; do
    case $name in
      *[!A-Za-z0-9-]*) fail "TRUSTSYNC_CERTIFICATE_NAMES: '$name' is not a Key Vault certificate name (1-127 letters, digits and hyphens, comma-separated)" ;;
    esac
    [ "${#name}" -le 127 ] || fail "TRUSTSYNC_CERTIFICATE_NAMES: '$name' is longer than 127 characters"
    # The vault's data plane: metadata only (the certificate's id), never a secret value.
    if error=$(az keyvault certificate show --vault-name "$vault_name" --name "$name" --query id --output tsv 2>&1 >/dev/null); then
      log "certificate $name: exists (checked)"
      continue
    fi
    case $error in
      *CertificateNotFound* | *"was not found"* | *"not found"*)
        missing_certificates="$missing_certificates $name" ;;
      *ForbiddenByFirewall* | *ForbiddenByConnection* | *"Failed to establish"* | *"Name or service not known"* | *"getaddrinfo"* | *"timed out"* | *"Max retries exceeded"*)
        log "certificate $name: could not check: the vault's data plane is not reachable from this machine (its firewall, or a private endpoint only); the app's first audit reports it if it is missing" ;;
      *ForbiddenByRbac* | *Forbidden* | *"not authorized"*)
        log "certificate $name: could not check: you may not read the vault's certificates (a data-plane role such as Key Vault Reader); the app's first audit reports it if it is missing" ;;
      *)
        log "certificate $name: could not check: $(printf '%s\n' "$error" | sed -n '1s/^ERROR: //p')" ;;
    esac
  done
  set +f
  [ -z "$missing_certificates" ] ||
    fail "Key Vault $vault_name has no certificate named:$missing_certificates (TRUSTSYNC_CERTIFICATE_NAMES); create it or correct the list: each named certificate gets its own role assignments, which need it to exist"
fi

# Trust bundles: plain secrets, each granted on its own (infra/access/keyvault.bicep).
bundle_names=$(printf '%s' "${TRUSTSYNC_TRUST_BUNDLES:-}" | tr ',' ' ')
missing_bundles=''
set -f
for name in $bundle_names; do
  case $name in
    *[!A-Za-z0-9-]*) fail "TRUSTSYNC_TRUST_BUNDLES: '$name' is not a Key Vault secret name (1-127 letters, digits and hyphens, comma-separated)" ;;
  esac
  [ "${#name}" -le 127 ] || fail "TRUSTSYNC_TRUST_BUNDLES: '$name' is longer than 127 characters"
  for certificate in $certificate_names; do
    [ "$(lower "$certificate")" != "$(lower "$name")" ] ||
      fail "TRUSTSYNC_TRUST_BUNDLES: '$name' is also in TRUSTSYNC_CERTIFICATE_NAMES; a bundle is a plain secret, not a certificate's"
  done
  # Metadata only (the versions' ids): never the secret's value.
  if error=$(az keyvault secret list-versions --vault-name "$vault_name" --name "$name" --query "[0].id" --output tsv 2>&1 >/dev/null); then
    log "trust bundle $name: exists (checked)"
    continue
  fi
  case $error in
    *SecretNotFound* | *"was not found"* | *"not found"*)
      missing_bundles="$missing_bundles $name" ;;
    *ForbiddenByFirewall* | *ForbiddenByConnection* | *"Failed to establish"* | *"Name or service not known"* | *"getaddrinfo"* | *"timed out"* | *"Max retries exceeded"*)
      log "trust bundle $name: could not check: the vault's data plane is not reachable from this machine (its firewall, or a private endpoint only); the app's first audit reports it if it is missing" ;;
    *ForbiddenByRbac* | *Forbidden* | *"not authorized"*)
      log "trust bundle $name: could not check: you may not list the vault's secrets (a data-plane role such as Key Vault Reader); the app's first audit reports it if it is missing" ;;
    *)
      log "trust bundle $name: could not check: $(printf '%s\n' "$error" | sed -n '1s/^ERROR: //p')" ;;
  esac
done
set +f
[ -z "$missing_bundles" ] ||
  fail "Key Vault $vault_name has no secret named:$missing_bundles (TRUSTSYNC_TRUST_BUNDLES); create it or correct the list: each trust bundle gets its own role assignment, which needs it to exist"

# --- the vault's system topic: where the event subscription will be written -----------------------
topic_group=''
topic_label=''
if [ -n "${TRUSTSYNC_EXISTING_SYSTEM_TOPIC:-}" ]; then
  topic_group=${TRUSTSYNC_EXISTING_SYSTEM_TOPIC_RESOURCE_GROUP:-$TRUSTSYNC_KEYVAULT_RESOURCE_GROUP}
  topic_label="system topic $TRUSTSYNC_EXISTING_SYSTEM_TOPIC (TRUSTSYNC_EXISTING_SYSTEM_TOPIC)"
elif topics=$(az eventgrid system-topic list --subscription "$kv_subscription" \
  --query "[].[source, name, resourceGroup]" --output tsv 2>/dev/null); then
  # Tabs become '|' first: a tab is white space to read.
  while IFS='|' read -r source name group _; do
    if [ -n "$source" ] && [ "$(lower "$source")" = "$(lower "$vault_id")" ]; then
      topic_group=$group
      topic_label="system topic $name"
    fi
  done <<EOF2
$(printf '%s\n' "$topics" | tr '\t' '|')
EOF2
  if [ -n "$topic_group" ]; then
    log "the vault's Event Grid $topic_label is in resource group $topic_group (checked); the event subscription is written there"
  else
    log "the vault has no Event Grid system topic yet (checked); one is created in resource group $TRUSTSYNC_KEYVAULT_RESOURCE_GROUP"
  fi
else
  unchecked_permissions="$unchecked_permissions
  the vault's system topic (az eventgrid system-topic list failed: its resource group is unknown)"
fi

# --- 5. permissions ------------------------------------------------------------------------------
if [ "${TRUSTSYNC_SKIP_PERMISSION_CHECK:-false}" = true ]; then
  log "permissions: NOT checked (TRUSTSYNC_SKIP_PERMISSION_CHECK=true); a deployment that lacks one fails with ARM's error"
else
  apim_group_scope=$(printf '%s' "$TRUSTSYNC_APIM_RESOURCE_ID" | sed 's#/providers/.*##')
  vault_group_scope="/subscriptions/$kv_subscription/resourceGroups/$TRUSTSYNC_KEYVAULT_RESOURCE_GROUP"
  log "checking your permissions on each scope the deployment writes to"
  # azd creates the app resource group and deploys into it; the postprovision hook runs a
  # subscription deployment and assigns roles in the app resource group.
  check_permissions "app subscription" "/subscriptions/$AZURE_SUBSCRIPTION_ID" \
    Microsoft.Resources/subscriptions/resourceGroups/write \
    Microsoft.Resources/deployments/write \
    Microsoft.Authorization/roleAssignments/write
  # Key Vault roles (postprovision); the system topic when the vault has none, and the event
  # subscription when the topic is in this resource group (postdeploy).
  vault_actions="Microsoft.Resources/deployments/write Microsoft.Authorization/roleAssignments/write"
  if [ -z "$topic_group" ]; then
    vault_actions="$vault_actions Microsoft.EventGrid/systemTopics/write Microsoft.EventGrid/systemTopics/eventSubscriptions/write"
  elif [ "$(lower "$topic_group")" = "$(lower "$TRUSTSYNC_KEYVAULT_RESOURCE_GROUP")" ]; then
    vault_actions="$vault_actions Microsoft.EventGrid/systemTopics/eventSubscriptions/write"
  fi
  if [ "$network_mode" = Private ] && [ "${TRUSTSYNC_KEYVAULT_PRIVATE_ENDPOINT_MANUAL_APPROVAL:-false}" != true ]; then
    # Approving the vault's private endpoint connection as it is created.
    vault_actions="$vault_actions Microsoft.KeyVault/vaults/privateEndpointConnectionsApproval/action"
  fi
  # shellcheck disable=SC2086 # one word per action
  check_permissions "Key Vault resource group" "$vault_group_scope" $vault_actions
  if [ -n "$topic_group" ] && [ "$(lower "$topic_group")" != "$(lower "$TRUSTSYNC_KEYVAULT_RESOURCE_GROUP")" ]; then
    # The event subscription is a child of the topic: deployed into the topic's resource group.
    check_permissions "system topic resource group" "/subscriptions/$kv_subscription/resourceGroups/$topic_group" \
      Microsoft.Resources/deployments/write \
      Microsoft.EventGrid/systemTopics/eventSubscriptions/write
  fi
  # The custom role and its assignment, deployed as a deployment in that resource group.
  check_permissions "APIM resource group" "$apim_group_scope" \
    Microsoft.Resources/deployments/write \
    Microsoft.Authorization/roleDefinitions/write \
    Microsoft.Authorization/roleAssignments/write
  if [ "$network_mode" = Private ]; then
    # Existing private DNS zones the private endpoints register in.
    for zone in "${TRUSTSYNC_BLOB_PRIVATE_DNS_ZONE_ID:-}" "${TRUSTSYNC_QUEUE_PRIVATE_DNS_ZONE_ID:-}" \
      "${TRUSTSYNC_TABLE_PRIVATE_DNS_ZONE_ID:-}" "${TRUSTSYNC_KEYVAULT_PRIVATE_DNS_ZONE_ID:-}" \
      "${TRUSTSYNC_SITES_PRIVATE_DNS_ZONE_ID:-}"; do
      [ -n "$zone" ] || continue
      check_permissions "private DNS zone" "$zone" Microsoft.Network/privateDnsZones/join/action
    done
  fi
  if [ -n "$missing_permissions" ]; then
    fail "you lack permissions the deployment needs (docs/deploy.md, Permissions):$missing_permissions"
  fi
  if [ -n "$unchecked_permissions" ]; then
    fail "could not read your permissions on:$unchecked_permissions
so nothing there is known to be granted. Check az (az login, az account show, the cloud) and run azd provision again, or set TRUSTSYNC_SKIP_PERMISSION_CHECK=true to go on unchecked"
  fi
  log "permissions: every action the deployment needs is granted (checked)"
fi

# --- 6. resource providers -----------------------------------------------------------------------
# ensure_provider SUBSCRIPTION LABEL NAMESPACE: registered already, or registered now (and waited
# for); one that cannot be registered stops the hook.
ensure_provider() {
  state=$(az provider show --namespace "$3" --subscription "$1" --query registrationState --output tsv 2>/dev/null) ||
    state=unknown
  if [ "$state" = Registered ]; then
    log "resource provider $3: registered in the $2 (checked)"
    return 0
  fi
  log "resource provider $3 is $state in the $2; registering it (az provider register --wait)"
  az provider register --namespace "$3" --subscription "$1" --wait --output none ||
    fail "could not register resource provider $3 in subscription $1: someone with Contributor there can run az provider register --namespace $3 --subscription $1"
  log "resource provider $3: registered in the $2"
}
providers="Microsoft.Web Microsoft.Storage Microsoft.ManagedIdentity Microsoft.Insights Microsoft.OperationalInsights"
if [ "$network_mode" = Private ]; then
  providers="$providers Microsoft.Network"
  if [ "$plan" = FlexConsumption ]; then
    # The app subnet is delegated to Microsoft.App/environments; no template resource names it.
    providers="$providers Microsoft.App"
  fi
fi
for namespace in $providers; do
  ensure_provider "$AZURE_SUBSCRIPTION_ID" "app subscription" "$namespace"
done
ensure_provider "$kv_subscription" "Key Vault subscription" Microsoft.EventGrid

azd_env_set TRUSTSYNC_HOSTING_PLAN_RESOLVED "$plan"
log "preprovision checks done"
