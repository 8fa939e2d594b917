// APIM Trust Sync: the resources `azd provision` owns. Everything here lives in ONE resource group
// that this template creates, on purpose: `azd down` deletes every resource group that appears in
// this deployment's output resources, so nothing may be deployed from here into the resource
// groups of the existing Key Vault or API Management service. Their role assignments, the custom
// APIM role and the Event Grid system topic are deployed by the postprovision hook (access.bicep),
// the event subscription by the postdeploy hook (eventgrid.bicep); the predown hook removes both.
targetScope = 'subscription'

// ---------------------------------------------------------------------------------------------
// azd
// ---------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('azd environment name; part of every resource name and tag.')
param environmentName string

@minLength(1)
@description('Region of the new resource group and everything in it. Must offer the chosen hosting plan.')
param location string

@description('Name of the resource group to create; empty = rg-<environmentName>.')
param resourceGroupName string = ''

@description('Tags added to every resource.')
param tags object = {}

// ---------------------------------------------------------------------------------------------
// Existing resources (referenced, never created here)
// ---------------------------------------------------------------------------------------------

@minLength(3)
@maxLength(24)
@description('Name of the existing Key Vault (Azure RBAC permission model) whose certificates are watched.')
param keyVaultName string

@minLength(1)
@description('Resource group of the existing Key Vault.')
param keyVaultResourceGroupName string

@description('Subscription of the existing Key Vault; empty = this deployment subscription.')
param keyVaultSubscriptionId string = ''

@minLength(1)
@description('Resource id of the existing API Management service: /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.ApiManagement/service/<name>')
param apimResourceId string

// ---------------------------------------------------------------------------------------------
// App behaviour: one parameter per app setting of shared/settings.py
// ---------------------------------------------------------------------------------------------

@description('APIM_GATEWAYS: self-hosted gateway ids, comma-separated; * = every self-hosted gateway.')
param apimGateways string = '*'

@description('CERTIFICATE_NAMES: Key Vault certificate names, comma-separated; * = all. Named certificates also narrow the Key Vault role assignments and the event filter.')
param certificateNames string = '*'

@description('TRUST_INTERMEDIATES: mark intermediates as trusted (roots always are).')
param trustIntermediates bool = true

@description('AUDIT_SCHEDULE: six-field NCRONTAB schedule of the drift audit.')
param auditSchedule string = '0 0 */6 * * *'

@description('AUDIT_REMEDIATE: the drift audit also repairs the drift it finds.')
param auditRemediate bool = false

@minValue(1)
@maxValue(64)
@description('MAX_CONCURRENCY: most Azure calls in flight at once.')
param maxConcurrency int = 12

@description('ARM_ENDPOINT override; empty = the default Resource Manager endpoint of AZURE_CLOUD.')
param armEndpointOverride string = ''

// ---------------------------------------------------------------------------------------------
// Hosting and identity
// ---------------------------------------------------------------------------------------------

@allowed([
  'UserAssigned'
  'SystemAssigned'
])
@description('Identity the app uses for every Azure call: a user-assigned identity (survives app re-creation, roles can be granted before the app exists) or the app system-assigned one.')
param identityType string = 'UserAssigned'

@allowed([
  'Auto'
  'FlexConsumption'
  'Dedicated'
])
@description('Auto = Flex Consumption, except in Azure China where Flex Consumption is not offered and a Linux App Service plan is used.')
param hostingPlan string = 'Auto'

@description('SKU of the Linux App Service plan when the Dedicated plan is used.')
param dedicatedPlanSku string = 'B1'

@allowed([
  2048
  4096
])
@description('Flex Consumption instance memory (MB).')
param flexInstanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
@description('Flex Consumption scale-out ceiling.')
param flexMaximumInstanceCount int = 40

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
@description('Redundancy of the host storage account. It holds only re-creatable state (deployment package, timer leases, function keys, dead letters); use ZRS where the region offers zones.')
param storageSkuName string = 'Standard_LRS'

// ---------------------------------------------------------------------------------------------
// Monitoring
// ---------------------------------------------------------------------------------------------

@minValue(30)
@maxValue(730)
@description('Log Analytics retention in days.')
param logRetentionInDays int = 30

@description('Email address told about drift, failed audits and function failures; empty = alerts fire without notification.')
param alertEmail string = ''

// ---------------------------------------------------------------------------------------------
// Derived values
// ---------------------------------------------------------------------------------------------

var cloudName = environment().name
var useFlex = hostingPlan == 'FlexConsumption' || (hostingPlan == 'Auto' && cloudName != 'AzureChinaCloud')
var useUserAssigned = identityType == 'UserAssigned'
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var allTags = union(tags, {
  'azd-env-name': environmentName
  application: 'apim-trust-sync'
})
var vaultSubscriptionId = empty(keyVaultSubscriptionId) ? subscription().subscriptionId : keyVaultSubscriptionId
// The vault URL is derived from the cloud DNS suffix instead of read from the vault, so this
// deployment needs no permission on the vault resource group.
var keyVaultUrl = 'https://${keyVaultName}${environment().suffixes.keyvaultDns}'
var deploymentContainerName = 'deployment-package'
var deadLetterContainerName = 'eventgrid-deadletter'
var functionAppName = 'func-trustsync-${resourceToken}'

resource rg 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: allTags
}

module identity 'modules/identity.bicep' = if (useUserAssigned) {
  name: 'trustsync-identity'
  scope: rg
  params: {
    name: 'id-trustsync-${resourceToken}'
    location: location
    tags: allTags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'trustsync-monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-trustsync-${resourceToken}'
    applicationInsightsName: 'appi-trustsync-${resourceToken}'
    location: location
    tags: allTags
    retentionInDays: logRetentionInDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'trustsync-storage'
  scope: rg
  params: {
    name: 'sttrustsync${resourceToken}'
    location: location
    tags: allTags
    skuName: storageSkuName
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'trustsync-function-app'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-trustsync-${resourceToken}'
    location: location
    tags: allTags
    useFlex: useFlex
    dedicatedPlanSku: dedicatedPlanSku
    flexInstanceMemoryMB: flexInstanceMemoryMB
    flexMaximumInstanceCount: flexMaximumInstanceCount
    useUserAssigned: useUserAssigned
    userAssignedIdentityId: useUserAssigned ? identity!.outputs.id : ''
    userAssignedIdentityClientId: useUserAssigned ? identity!.outputs.clientId : ''
    userAssignedIdentityPrincipalId: useUserAssigned ? identity!.outputs.principalId : ''
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultUrl: keyVaultUrl
    apimResourceId: apimResourceId
    apimGateways: apimGateways
    certificateNames: certificateNames
    trustIntermediates: trustIntermediates
    cloudName: cloudName
    armEndpointOverride: armEndpointOverride
    auditSchedule: auditSchedule
    auditRemediate: auditRemediate
    maxConcurrency: maxConcurrency
  }
}

module appRbac 'modules/app-rbac.bicep' = {
  name: 'trustsync-app-rbac'
  scope: rg
  params: {
    principalId: functionApp.outputs.principalId
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'trustsync-alerts'
  scope: rg
  params: {
    location: location
    tags: allTags
    resourceToken: resourceToken
    workspaceId: monitoring.outputs.logAnalyticsWorkspaceId
    functionAppName: functionAppName
    alertEmail: alertEmail
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs: azd writes them to the environment (.azure/<env>/.env), where the hooks read them.
// ---------------------------------------------------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_CLOUD string = cloudName
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_ID string = functionApp.outputs.id
output AZURE_FUNCTION_APP_URL string = functionApp.outputs.url
output TRUSTSYNC_HOSTING_PLAN_RESOLVED string = useFlex ? 'FlexConsumption' : 'Dedicated'
output TRUSTSYNC_PRINCIPAL_ID string = functionApp.outputs.principalId
output TRUSTSYNC_KEYVAULT_NAME string = keyVaultName
output TRUSTSYNC_KEYVAULT_RESOURCE_GROUP string = keyVaultResourceGroupName
output TRUSTSYNC_KEYVAULT_SUBSCRIPTION_ID string = vaultSubscriptionId
output TRUSTSYNC_APIM_RESOURCE_ID string = apimResourceId
output TRUSTSYNC_CERTIFICATE_NAMES string = certificateNames
output TRUSTSYNC_STORAGE_ACCOUNT_ID string = storage.outputs.id
output TRUSTSYNC_DEADLETTER_CONTAINER string = deadLetterContainerName
