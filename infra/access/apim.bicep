// In the API Management resource group: a custom role holding only the control-plane actions the
// app calls, assigned on the one APIM service. It replaces API Management Service Contributor,
// which could also change APIs, products, policies, subscriptions, named values and the service.
//
// The app reads the service, manages the service-level CA certificates it uploads
// (service/certificates) and the certificate authorities of each self-hosted gateway
// (gateways/certificateAuthorities), and lists the gateways to resolve APIM_GATEWAYS = *.

@description('Principal (object) id of the app identity.')
param principalId string

@description('Existing API Management service name (in this resource group).')
param apimName string

@allowed([
  'off'
  'manage'
])
@description('CA_STORE of the app: manage adds service/write, which updates the whole service (docs/gateway-kinds.md: the blast radius).')
param caStore string = 'off'

@allowed([
  'off'
  'manage'
])
@description('BACKEND_TLS of the app: manage adds service/backends/read and write (the v2 tiers\' TLS pins).')
param backendTls string = 'off'

@description('azd environment name; one role definition per environment, so tearing one down never breaks another.')
param environmentName string

resource apim 'Microsoft.ApiManagement/service@2023-05-01-preview' existing = {
  name: apimName
}

var baseActions = [
  'Microsoft.ApiManagement/service/read'
  'Microsoft.ApiManagement/service/certificates/read'
  'Microsoft.ApiManagement/service/certificates/write'
  'Microsoft.ApiManagement/service/certificates/delete'
  'Microsoft.ApiManagement/service/gateways/read'
  'Microsoft.ApiManagement/service/gateways/certificateAuthorities/read'
  'Microsoft.ApiManagement/service/gateways/certificateAuthorities/write'
  'Microsoft.ApiManagement/service/gateways/certificateAuthorities/delete'
]
// CA_STORE=manage: the classic CA store is a property of the service, written by updating the whole
// service; no narrower action exists. Granted only when the setting is on.
var caStoreActions = [
  'Microsoft.ApiManagement/service/write'
]
// BACKEND_TLS=manage: a backend's TLS pins are written with a PATCH of the backend (2025-03-01-preview).
var backendActions = [
  'Microsoft.ApiManagement/service/backends/read'
  'Microsoft.ApiManagement/service/backends/write'
]

// Workspaces exist on these tiers only (read from the service at deployment): there the app lists the
// workspaces and their links (the workspace gateways serving them, which take no CA certificates) to
// report them, and with BACKEND_TLS=manage the workspaces' backends, which it reports and never writes.
var workspaceTiers = [
  'premium'
  'basicv2'
  'standardv2'
  'premiumv2'
]
var hasWorkspaces = contains(workspaceTiers, toLower(apim.sku.name))
var workspaceActions = [
  'Microsoft.ApiManagement/service/workspaces/read'
  'Microsoft.ApiManagement/service/workspaceLinks/read'
]
var workspaceBackendActions = [
  'Microsoft.ApiManagement/service/workspaces/backends/read'
]

// The role is defined for the resource group (custom roles should not list single resources as
// assignable scopes) but assigned only on the APIM service below.
resource gatewayCaOperator 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, environmentName, 'apim-trust-sync-gateway-ca-operator')
  properties: {
    roleName: 'APIM Gateway Trust Syncer (${environmentName}, ${uniqueString(resourceGroup().id)})'
    description: 'Read an API Management service and its self-hosted gateways; manage service CA certificates and gateway certificate authorities. Nothing else.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: concat(baseActions, (caStore == 'manage') ? caStoreActions : [], (backendTls == 'manage') ? backendActions : [], hasWorkspaces ? workspaceActions : [], (hasWorkspaces && backendTls == 'manage') ? workspaceBackendActions : [])
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

// Custom role definitions live at subscription level even when deployed from a resource group, so
// the id is built with subscriptionResourceId rather than taken from the resource symbol.
var gatewayCaOperatorId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', gatewayCaOperator.name)

resource gatewayCaOperatorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(apim.id, principalId, gatewayCaOperatorId)
  scope: apim
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: gatewayCaOperatorId
    description: 'APIM Trust Sync: keep self-hosted gateway trust in line with Key Vault CA chains.'
  }
}

output roleDefinitionId string = gatewayCaOperatorId
