# Shared by the azd hooks (POSIX sh; sourced, not run). Nothing here changes the caller's az
# context: every az call names its subscription explicitly.

log() { printf '[trustsync] %s\n' "$*"; }
fail() { printf '[trustsync] ERROR: %s\n' "$*" >&2; exit 1; }

# azd exports the environment (.azure/<env>/.env, main.bicep outputs included) to hooks. When a
# hook is run by hand instead, read the same values from `azd env get-values`. The argument names
# a variable the hook needs that only azd sets (default: a main.bicep output).
load_azd_env() {
  marker=${1:-AZURE_FUNCTION_APP_NAME}
  eval "marker_value=\${$marker:-}"
  # shellcheck disable=SC2154 # assigned by the eval above
  if [ -n "${AZURE_ENV_NAME:-}" ] && [ -n "$marker_value" ]; then
    return 0
  fi
  command -v azd >/dev/null 2>&1 || fail "run this through azd (azd up / azd hooks run), or install azd"
  values=$(azd env get-values) || fail "azd env get-values failed: select an environment with azd env select"
  # Lines are KEY="VALUE"; only well-formed keys are exported, values are never evaluated.
  while IFS= read -r line; do
    key=${line%%=*}
    value=${line#*=}
    case $key in
      '' | *[!A-Za-z0-9_]* | [0-9]*) continue ;;
    esac
    value=${value#\"}
    value=${value%\"}
    export "$key=$value"
  done <<EOF
$values
EOF
}

# Fails unless every named variable is set and not empty.
require_vars() {
  for name in "$@"; do
    eval "value=\${$name:-}"
    # shellcheck disable=SC2154 # assigned by the eval above
    [ -n "$value" ] || fail "$name is not set in the azd environment (run azd provision first)"
  done
}

# The cloud an Azure region belongs to: Azure China regions are china*, Azure US Government
# regions usgov* and usdod*, every other region is the public cloud's.
cloud_of_region() {
  case $(lower "$1" | tr -d ' ') in
    china*) echo AzureChinaCloud ;;
    usgov* | usdod*) echo AzureUSGovernment ;;
    *) echo AzureCloud ;;
  esac
}

# The hooks deploy with the Azure CLI; it must be logged in to the cloud azd deploys to. That cloud
# is AZURE_CLOUD once a provision has run (a main.bicep output); on the first run, before any
# output exists, it is the cloud of AZURE_LOCATION, so an Azure China region with az on the
# public cloud stops here instead of in three unreadable permission checks.
require_az() {
  command -v az >/dev/null 2>&1 || fail "the Azure CLI (az) is required: https://aka.ms/azure-cli"
  az account show --output none 2>/dev/null || fail "az is not logged in: run az login (Azure China: az cloud set --name AzureChinaCloud first)"
  az_cloud=$(az cloud show --query name --output tsv) || fail "az cloud show failed: cannot tell which cloud az is logged in to"
  if [ -n "${AZURE_CLOUD:-}" ]; then
    target_cloud=$AZURE_CLOUD
    target_reason="azd deployed to $AZURE_CLOUD"
  elif [ -n "${AZURE_LOCATION:-}" ]; then
    target_cloud=$(cloud_of_region "$AZURE_LOCATION")
    target_reason="$AZURE_LOCATION is a region of $target_cloud"
  else
    return 0
  fi
  if [ "$az_cloud" != "$target_cloud" ]; then
    fail "az is set to cloud $az_cloud but $target_reason: run az cloud set --name $target_cloud && az login (and azd config set cloud.name $target_cloud && azd auth login)"
  fi
}

# Records a value in the azd environment (.azure/<env>/.env) for the later hooks, and exports it.
azd_env_set() {
  if command -v azd >/dev/null 2>&1; then
    azd env set "$1" "$2" >/dev/null || fail "azd env set $1 failed"
  fi
  export "$1=$2"
}

lower() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]'; }

# Names shared by the hooks. main.bicep builds every name from the environment name so that each
# fits its limit (azd stores them as outputs); an environment provisioned before those outputs
# existed falls back to the names it was given then.
# shellcheck disable=SC2034 # used by the scripts that source this file
trustsync_names() {
  access_deployment=${TRUSTSYNC_ACCESS_DEPLOYMENT_NAME:-$(printf '%.64s' "trustsync-access-$AZURE_ENV_NAME")}
  eventgrid_deployment=${TRUSTSYNC_EVENTGRID_DEPLOYMENT_NAME:-$(printf '%.64s' "trustsync-eventgrid-$AZURE_ENV_NAME")}
  event_subscription=${TRUSTSYNC_EVENT_SUBSCRIPTION_NAME:-"trustsync-$AZURE_ENV_NAME"}
  new_system_topic=${TRUSTSYNC_NEW_SYSTEM_TOPIC_NAME:-"evgt-trustsync-$AZURE_ENV_NAME"}
  kv_subscription=${TRUSTSYNC_KEYVAULT_SUBSCRIPTION_ID:-$AZURE_SUBSCRIPTION_ID}
  # The system topic the postprovision hook resolved (the vault's existing one, or ours).
  system_topic=${TRUSTSYNC_SYSTEM_TOPIC_NAME:-${TRUSTSYNC_EXISTING_SYSTEM_TOPIC:-$new_system_topic}}
  system_topic_group=${TRUSTSYNC_SYSTEM_TOPIC_RESOURCE_GROUP:-${TRUSTSYNC_EXISTING_SYSTEM_TOPIC_RESOURCE_GROUP:-${TRUSTSYNC_KEYVAULT_RESOURCE_GROUP:-}}}
}

# action_allowed ACTION PERMISSIONS: 0 when a permission entry (a line "actions<TAB>notActions",
# space-separated patterns) grants ACTION and does not exclude it. ARM matches case-insensitively
# and '*' spans any characters, as a case pattern does.
action_allowed() {
  wanted=$(lower "$1")
  set -f # the patterns hold '*': no file name expansion
  result=1
  # Tabs become '|' first: a tab is white space to read, so an empty actions field would vanish
  # and the notActions would be read as actions.
  while IFS='|' read -r actions not_actions; do
    granted=false
    for pattern in $(lower "$actions"); do
      # shellcheck disable=SC2254 # the pattern is meant to be a pattern
      case $wanted in $pattern) granted=true ;; esac
    done
    for pattern in $(lower "$not_actions"); do
      # shellcheck disable=SC2254 # the pattern is meant to be a pattern
      case $wanted in $pattern) granted=false ;; esac
    done
    if [ "$granted" = true ]; then
      result=0
      break
    fi
  done <<EOF
$(printf '%s\n' "$2" | tr '\t' '|')
EOF
  set +f
  return $result
}

# check_permissions LABEL SCOPE ACTION...: reads what the signed-in identity may do at SCOPE
# (Microsoft.Authorization/permissions) and adds each ACTION it may not do to $missing_permissions.
# Permissions it cannot read are added to $unchecked_permissions: a check that read nothing
# proves nothing, so the caller must never report them as granted.
missing_permissions=''
unchecked_permissions=''
check_permissions() {
  label=$1
  scope=$2
  shift 2
  permissions=$(az rest --method get \
    --url "$scope/providers/Microsoft.Authorization/permissions?api-version=2022-04-01" \
    --query "value[].[join(' ', actions), join(' ', notActions)]" --output tsv 2>/dev/null) || {
    log "could not read your permissions on $label ($scope)"
    unchecked_permissions="$unchecked_permissions
  $label ($scope)"
    return 0
  }
  for action in "$@"; do
    if ! action_allowed "$action" "$permissions"; then
      missing_permissions="$missing_permissions
  $label ($scope): $action"
    fi
  done
}
