# Shared by the azd hooks (POSIX sh; sourced, not run). Nothing here changes the caller's az
# context: every az call names its subscription explicitly.

log() { printf '[trustsync] %s\n' "$*"; }
fail() { printf '[trustsync] ERROR: %s\n' "$*" >&2; exit 1; }

# azd exports the environment (.azure/<env>/.env, main.bicep outputs included) to hooks. When a
# hook is run by hand instead, read the same values from `azd env get-values`.
load_azd_env() {
  if [ -n "${AZURE_ENV_NAME:-}" ] && [ -n "${AZURE_FUNCTION_APP_NAME:-}" ]; then
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

# The hooks deploy with the Azure CLI; it must be logged in to the cloud azd deployed to.
require_az() {
  command -v az >/dev/null 2>&1 || fail "the Azure CLI (az) is required: https://aka.ms/azure-cli"
  az account show --output none 2>/dev/null || fail "az is not logged in: run az login (Azure China: az cloud set --name AzureChinaCloud first)"
  az_cloud=$(az cloud show --query name --output tsv)
  if [ -n "${AZURE_CLOUD:-}" ] && [ "$az_cloud" != "$AZURE_CLOUD" ]; then
    fail "az is set to cloud $az_cloud but azd deployed to $AZURE_CLOUD: run az cloud set --name $AZURE_CLOUD && az login"
  fi
}

# Names shared by the hooks; deployment names are cut to ARM's 64 characters.
# shellcheck disable=SC2034 # used by the scripts that source this file
trustsync_names() {
  access_deployment=$(printf '%.64s' "trustsync-access-$AZURE_ENV_NAME")
  eventgrid_deployment=$(printf '%.64s' "trustsync-eventgrid-$AZURE_ENV_NAME")
  event_subscription="trustsync-$AZURE_ENV_NAME"
  if [ -n "${TRUSTSYNC_EXISTING_SYSTEM_TOPIC:-}" ]; then
    system_topic=$TRUSTSYNC_EXISTING_SYSTEM_TOPIC
  else
    system_topic="evgt-trustsync-$AZURE_ENV_NAME"
  fi
  kv_subscription=${TRUSTSYNC_KEYVAULT_SUBSCRIPTION_ID:-$AZURE_SUBSCRIPTION_ID}
}
