#!/bin/sh
# azd predeploy hook: lets `azd deploy` reach the app's deployment (scm) site in private network
# mode, from wherever azd runs, for the deployment only.
# Private mode provisions the app with public network access Disabled and both its sites denying
# every public address; its private endpoint is in a virtual network the same `azd up` has just
# created, which your machine is not in. So this hook, in private mode only:
#   1. adds an Allow rule for the deployer's public address(es) to the scm site's access
#      restrictions (default action Deny; the app's own site keeps denying everything), then
#   2. turns the site's public network access on, so those rules apply.
# The postdeploy hook turns public network access off again and removes the rule; so does the next
# `azd provision`, which writes the closed values again. The deployer's address is
# TRUSTSYNC_DEPLOYER_IP (comma-separated IPv4 or IPv6 addresses or CIDR ranges: e.g. every egress
# address of a proxy), or else is asked of https://api.ipify.org. Public network mode: nothing to do.
set -eu
# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"

load_azd_env
require_vars AZURE_ENV_NAME AZURE_SUBSCRIPTION_ID AZURE_FUNCTION_APP_NAME AZURE_FUNCTION_APP_ID
if [ "${TRUSTSYNC_NETWORK_MODE:-Public}" != Private ]; then
  log "public network mode: the app's deployment site is reachable as it is"
  exit 0
fi
require_az

addresses=${TRUSTSYNC_DEPLOYER_IP:-}
if [ -z "$addresses" ]; then
  command -v curl >/dev/null 2>&1 ||
    fail "cannot find your public address (no curl): azd env set TRUSTSYNC_DEPLOYER_IP <address>"
  addresses=$(curl -fsS --max-time 20 https://api.ipify.org) ||
    fail "cannot find your public address (https://api.ipify.org did not answer): azd env set TRUSTSYNC_DEPLOYER_IP <address>"
  log "your public address, as https://api.ipify.org sees it: $addresses (set TRUSTSYNC_DEPLOYER_IP if you leave through several)"
fi

# One rule per address; a bare address becomes a /32 (IPv4) or /128 (IPv6) range.
rules=''
priority=100
set -f
for address in $(printf '%s' "$addresses" | tr ',' ' '); do
  case $address in
    *[!0-9A-Fa-f.:/]* | '' | */*/* | /*)
      fail "TRUSTSYNC_DEPLOYER_IP: '$address' is not an IP address or CIDR range" ;;
  esac
  case $address in
    */*) range=$address ;;
    *:*) range="$address/128" ;;
    *.*.*.*) range="$address/32" ;;
    *) fail "TRUSTSYNC_DEPLOYER_IP: '$address' is not an IP address or CIDR range" ;;
  esac
  [ -z "$rules" ] || rules="$rules,"
  rules="$rules{\"ipAddress\":\"$range\",\"action\":\"Allow\",\"priority\":$priority,\"name\":\"azd-deployer-$priority\",\"description\":\"azd deploy (predeploy hook); removed by the postdeploy hook\"}"
  priority=$((priority + 1))
done
set +f

api="api-version=2024-04-01"
log "opening the deployment (scm) site of $AZURE_FUNCTION_APP_NAME to $addresses only; the app itself keeps denying public traffic"
az rest --method patch --url "$AZURE_FUNCTION_APP_ID/config/web?$api" \
  --body "{\"properties\":{\"ipSecurityRestrictions\":[],\"ipSecurityRestrictionsDefaultAction\":\"Deny\",\"scmIpSecurityRestrictionsUseMain\":false,\"scmIpSecurityRestrictionsDefaultAction\":\"Deny\",\"scmIpSecurityRestrictions\":[$rules]}}" \
  --output none || fail "could not set the access restrictions of $AZURE_FUNCTION_APP_NAME"
az rest --method patch --url "$AZURE_FUNCTION_APP_ID?$api" \
  --body '{"properties":{"publicNetworkAccess":"Enabled"}}' \
  --output none || fail "could not turn on public network access of $AZURE_FUNCTION_APP_NAME for the deployment"
log "deploying; the postdeploy hook closes public network access again (if the deployment fails: azd deploy again, or azd provision, closes it)"
