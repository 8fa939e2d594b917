#!/bin/sh
# azd predown hook: removes what the postprovision and postdeploy hooks created OUTSIDE the app
# resource group, before `azd down` deletes that resource group. It deletes exactly the resources
# listed in the outputs of the two hook deployments (event subscription, role assignments, the
# custom APIM role, the system topic if the hook created it) and never the Key Vault, the APIM
# service or their resource groups. A system topic this environment did not create is never in
# those outputs; one it created is kept while other event subscriptions still use it (other
# deployments on the same vault). Safe to re-run: missing resources are skipped.
set -eu
# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"

load_azd_env
require_vars AZURE_ENV_NAME AZURE_SUBSCRIPTION_ID TRUSTSYNC_KEYVAULT_RESOURCE_GROUP TRUSTSYNC_APIM_RESOURCE_ID
require_az
trustsync_names

# Resource ids a deployment created, in $ids: empty when the deployment does not exist (nothing to
# remove). A deployment that exists but cannot be read is added to $unread: its resources are not
# removed, and the hook says so instead of reporting them removed.
unread=''
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
read_deployment() {
  label=$1
  shift
  if ! ids=$("$@" --query "properties.outputResources[].id" --output tsv 2>"$errors"); then
    ids=''
    case $(cat "$errors") in
      *DeploymentNotFound* | *"could not be found"* | *ResourceGroupNotFound*) ;;
      *) unread="$unread
  $label: $(sed -n '1s/^ERROR: //p' "$errors")" ;;
    esac
  fi
}

read_deployment "$eventgrid_deployment" az deployment group show --name "$eventgrid_deployment" \
  --subscription "$kv_subscription" --resource-group "$system_topic_group"
group_ids=$ids
read_deployment "$access_deployment" az deployment sub show --name "$access_deployment" --subscription "$AZURE_SUBSCRIPTION_ID"
sub_ids=$ids
all_ids=$(printf '%s\n%s\n' "$group_ids" "$sub_ids")

# Delete in dependency order: subscriptions, assignments, then the role they use, then topics.
# delete_matching PATTERN [EXCLUDED]: case patterns on the lower-cased resource id.
delete_matching() {
  pattern=$1
  excluded=${2:-}
  printf '%s\n' "$all_ids" | while IFS= read -r id; do
    [ -n "$id" ] || continue
    lower=$(printf '%s' "$id" | tr '[:upper:]' '[:lower:]')
    if [ -n "$excluded" ]; then
      # shellcheck disable=SC2254 # the pattern is meant to be a pattern
      case $lower in $excluded) continue ;; esac
    fi
    # shellcheck disable=SC2254 # the pattern is meant to be a pattern
    case $lower in
      $pattern)
        case $lower in
          */providers/microsoft.authorization/roleassignments/*)
            log "deleting $id"
            az role assignment delete --ids "$id" --output none || log "could not delete $id (already gone?)" ;;
          */providers/microsoft.authorization/roledefinitions/*)
            # A custom role is deleted through its assignable scope: the APIM resource group.
            log "deleting $id"
            scope=$(printf '%s' "$TRUSTSYNC_APIM_RESOURCE_ID" | sed 's#/providers/.*##')
            az role definition delete --name "${id##*/}" --scope "$scope" --output none || log "could not delete $id (already gone?)" ;;
          */providers/microsoft.eventgrid/systemtopics/*/eventsubscriptions/*)
            log "deleting $id"
            az resource delete --ids "$id" --output none || log "could not delete $id (already gone?)" ;;
          */providers/microsoft.eventgrid/systemtopics/*)
            # Ours, but maybe shared since: other deployments on this vault subscribe to it too.
            topic_subscription=$(printf '%s' "$id" | cut -d/ -f3)
            topic_group=$(printf '%s' "$id" | cut -d/ -f5)
            topic_name=$(printf '%s' "$id" | cut -d/ -f9)
            if ! others=$(az eventgrid system-topic event-subscription list --subscription "$topic_subscription" \
              --resource-group "$topic_group" --system-topic-name "$topic_name" --query "[].name" --output tsv); then
              log "kept system topic $topic_name: its event subscriptions could not be listed"
            elif [ -n "$others" ]; then
              log "kept system topic $topic_name: still used by event subscriptions $(printf '%s' "$others" | tr '\n' ' ')"
            else
              log "deleting $id"
              az resource delete --ids "$id" --output none || log "could not delete $id (already gone?)"
            fi ;;
          *)
            log "deleting $id"
            az resource delete --ids "$id" --output none || log "could not delete $id (already gone?)" ;;
        esac
        ;;
    esac
  done
}

delete_matching '*/providers/microsoft.eventgrid/systemtopics/*/eventsubscriptions/*'
delete_matching '*/providers/microsoft.authorization/roleassignments/*'
delete_matching '*/providers/microsoft.authorization/roledefinitions/*'
delete_matching '*/providers/microsoft.eventgrid/systemtopics/*' '*/eventsubscriptions/*'

# A deployment that could not be read keeps its record: it lists what is left to remove.
if [ -n "$unread" ]; then
  fail "could not read these deployments, so what they created outside the app resource group was NOT removed:$unread
fix az (az login, the cloud) and run azd down again, or remove their resources by hand (docs/deploy.md, Tear down)"
fi
# The deployment records themselves (history only).
az deployment group delete --name "$eventgrid_deployment" --subscription "$kv_subscription" \
  --resource-group "$system_topic_group" --output none 2>/dev/null || true
az deployment sub delete --name "$access_deployment" --subscription "$AZURE_SUBSCRIPTION_ID" --output none 2>/dev/null || true
log "access outside the app resource group removed; azd down now deletes the app resource group"
