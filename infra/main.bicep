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

@description('TRUST_BUNDLES: Key Vault plain secret names of PEM CA certificates, comma-separated; empty = none (docs/trust-bundles.md).')
param trustBundles string = ''

@description('TRUST_INTERMEDIATES: mark intermediates as trusted (roots always are). false follows Microsoft\'s guidance for the self-hosted gateway: the root trusted, intermediates for chain building only.')
param trustIntermediates bool = false

@allowed([
  'off'
  'manage'
])
@description('CA_STORE: manage = the app writes a classic tier\'s CA store (its managed gateway\'s trust); off = verdicts only. manage needs Microsoft.ApiManagement/service/write, granted by the postprovision hook only then (docs/gateway-kinds.md).')
param caStore string = 'off'

@allowed([
  'off'
  'manage'
])
@description('BACKEND_TLS: manage = the app writes the TLS pins of a v2 tier\'s backends (a preview API); needs service/backends/read and write, granted by the postprovision hook only then.')
param backendTls string = 'off'

@description('BACKEND_CERTIFICATES: backend-id=certificate-name,... for backends whose URL host does not name the certificate.')
param backendCertificates string = ''

@description('DEPLOYMENT_ID: 1-10 of a-z, 0-9, carried in every APIM id this deployment writes, so that several deployments can share one APIM; empty = derived from the app\'s name (and ids written before deployments had one are adopted).')
@maxLength(10)
param deploymentId string = ''

@description('AUDIT_SCHEDULE: six-field NCRONTAB schedule of the drift audit.')
param auditSchedule string = '0 0 */6 * * *'

@allowed([
  'false'
  'additions'
  'true'
])
@description('AUDIT_REMEDIATE: what the drift audit repairs: false = nothing (report only), additions = missing trust only (never removes), true = all drift.')
param auditRemediate string = 'additions'

@description('ROTATION_GRACE: how long a certificate version that stopped being the latest stays trusted, e.g. 24h.')
param rotationGrace string = '24h'

@minValue(0)
@maxValue(365)
@description('EXPIRY_WARNING_DAYS: the audit reports status expiring when a leaf or CA it depends on expires within this many days (0-365).')
param expiryWarningDays int = 30

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
  'FlexConsumption'
  'Dedicated'
])
@description('Hosting plan. azd sets it from TRUSTSYNC_HOSTING_PLAN through the preprovision hook, which resolves Auto from the region offer (az functionapp list-flexconsumption-locations) and falls back to Dedicated.')
param hostingPlan string = 'FlexConsumption'

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

@minValue(120)
@maxValue(3600)
@description('Function timeout in seconds; must equal functionTimeout in host.json (a test compares them). RUN_TIME_BUDGET is this minus runTimeMarginSeconds.')
param functionTimeoutSeconds int = 600

@minValue(10)
@maxValue(300)
@description('Seconds kept back from the function timeout so a run ends, logs and reports before the host stops it.')
param runTimeMarginSeconds int = 60

// ---------------------------------------------------------------------------------------------
// Network
// ---------------------------------------------------------------------------------------------

@allowed([
  'Public'
  'Private'
])
@description('Public = storage and the app on public endpoints, protected by Entra ID; Event Grid pushes events to the function. Private = the app joins a new virtual network (VNet integration); the host storage account, the event queue and the existing Key Vault are reached through private endpoints, host storage refuses public traffic, Event Grid writes events to the event queue and the app has no public endpoint (its own private endpoint only).')
param networkMode string = 'Public'

@description('Private mode: address space of the new virtual network.')
param vnetAddressPrefix string = '10.60.0.0/23'

@description('Private mode: subnet the app is integrated into (delegated to the plan; Flex Consumption uses one address per instance).')
param appSubnetPrefix string = '10.60.0.0/24'

@description('Private mode: subnet of the private endpoints.')
param privateEndpointSubnetPrefix string = '10.60.1.0/27'

@description('Private mode: DNS servers of the virtual network, comma-separated (e.g. a hub DNS forwarder); empty = Azure DNS with the private DNS zones linked here.')
param vnetDnsServers string = ''

@description('Private mode: resource id of an existing privatelink.blob private DNS zone (e.g. in a hub); empty = create one here and link it to the virtual network.')
param blobPrivateDnsZoneId string = ''

@description('Private mode: resource id of an existing privatelink.vaultcore private DNS zone; empty = create one here and link it to the virtual network.')
param keyVaultPrivateDnsZoneId string = ''

@description('Private mode: resource id of an existing privatelink.queue private DNS zone; empty = create one here and link it to the virtual network.')
param queuePrivateDnsZoneId string = ''

@description('Private mode: resource id of an existing privatelink.table private DNS zone (the Functions host writes its diagnostic events to Table storage); empty = create one here and link it to the virtual network.')
param tablePrivateDnsZoneId string = ''

@description('Private mode: resource id of an existing App Service private DNS zone (privatelink.azurewebsites.net in the public cloud); empty = create one here and link it to the virtual network.')
param sitesPrivateDnsZoneId string = ''

@description('Private mode: request the Key Vault private endpoint for manual approval by the vault owner instead of approving it with the deploying identity.')
param keyVaultPrivateEndpointManualApproval bool = false

// ---------------------------------------------------------------------------------------------
// Monitoring
// ---------------------------------------------------------------------------------------------

@allowed([
  'Auto'
  'Entra'
  'ConnectionString'
])
@description('How the app authenticates its telemetry. Auto = Entra ID in the public cloud, where Entra-authenticated ingestion is documented, and the connection string elsewhere (Azure China, US Government), where it is not.')
param telemetryAuthentication string = 'Auto'

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
var useFlex = hostingPlan == 'FlexConsumption'
var usePrivateNetwork = networkMode == 'Private'
// Entra-authenticated Application Insights ingestion is documented for the public cloud only.
var telemetryUsesEntra = (telemetryAuthentication == 'Entra') || ((telemetryAuthentication == 'Auto') && (cloudName == 'AzureCloud'))
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
var keyVaultId = '/subscriptions/${vaultSubscriptionId}/resourceGroups/${keyVaultResourceGroupName}/providers/Microsoft.KeyVault/vaults/${keyVaultName}'
var deploymentContainerName = 'deployment-package'
var deadLetterContainerName = 'eventgrid-deadletter'
// The queue on_keyvault_event_queue reads, in the dead-letter account: private mode's event path.
var eventQueueName = 'keyvault-events'
var functionAppName = 'func-trustsync-${resourceToken}'
var runTimeBudget = '${functionTimeoutSeconds - runTimeMarginSeconds}s'

// Names built from the environment name (1-64 characters) must fit their resource's limit for
// every valid environment name. A name that fits stays readable and unchanged; a longer one is cut
// and made unique again with a hash of the whole name (50 + 1 + 13 = 64). The hooks read these from
// the outputs below instead of building names of their own.
//
// azd accepts environment names of letters, digits, '-', '_', '.', '(' and ')' (the rules of an ARM
// deployment name), but Event Grid names allow only letters, digits and hyphens and a resource
// group name may not end in '.'. So names are built from nameToken: the environment name itself
// when it holds only letters, digits and hyphens (existing environments keep their names), else
// the name with every other character turned into '-' and a hash of the original appended, so
// 'prod_a' and 'prod.a' never share an event subscription on one vault's topic.
var nameSafe = replace(replace(replace(replace(environmentName, '_', '-'), '.', '-'), '(', '-'), ')', '-')
var nameToken = (nameSafe == environmentName) ? environmentName : '${nameSafe}-${take(uniqueString(environmentName), 6)}'
var resourceGroupNameFull = 'rg-${nameToken}'
var eventSubscriptionFull = 'trustsync-${nameToken}'
var eventSubscriptionName = (length(eventSubscriptionFull) <= 64) ? eventSubscriptionFull : '${take(eventSubscriptionFull, 50)}-${uniqueString(eventSubscriptionFull)}'
var accessDeploymentFull = 'trustsync-access-${nameToken}'
var accessDeploymentName = (length(accessDeploymentFull) <= 64) ? accessDeploymentFull : '${take(accessDeploymentFull, 50)}-${uniqueString(accessDeploymentFull)}'
var eventGridDeploymentFull = 'trustsync-eventgrid-${nameToken}'
var eventGridDeploymentName = (length(eventGridDeploymentFull) <= 64) ? eventGridDeploymentFull : '${take(eventGridDeploymentFull, 50)}-${uniqueString(eventGridDeploymentFull)}'
// System topic names: 3-50 letters, digits and hyphens (the limit of Event Grid topics; PSRule's
// Azure.EventGrid.SystemTopicNaming states the same), so a long name is cut like the ones above
// (36 + 1 + 13 = 50).
var systemTopicFull = 'evgt-trustsync-${nameToken}'
var systemTopicName = (length(systemTopicFull) <= 50) ? systemTopicFull : '${take(systemTopicFull, 36)}-${uniqueString(systemTopicFull)}'

resource rg 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: empty(resourceGroupName) ? resourceGroupNameFull : resourceGroupName
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
    disableLocalAuth: telemetryUsesEntra
  }
}

module network 'modules/network.bicep' = if (usePrivateNetwork) {
  name: 'trustsync-network'
  scope: rg
  params: {
    vnetName: 'vnet-trustsync-${resourceToken}'
    location: location
    tags: allTags
    addressPrefix: vnetAddressPrefix
    appSubnetPrefix: appSubnetPrefix
    privateEndpointSubnetPrefix: privateEndpointSubnetPrefix
    appSubnetDelegation: useFlex ? 'Microsoft.App/environments' : 'Microsoft.Web/serverFarms'
    dnsServers: empty(vnetDnsServers) ? [] : split(replace(vnetDnsServers, ' ', ''), ',')
    blobPrivateDnsZoneId: blobPrivateDnsZoneId
    keyVaultPrivateDnsZoneId: keyVaultPrivateDnsZoneId
    queuePrivateDnsZoneId: queuePrivateDnsZoneId
    tablePrivateDnsZoneId: tablePrivateDnsZoneId
    sitesPrivateDnsZoneId: sitesPrivateDnsZoneId
  }
}

module storagePrivateEndpoint 'modules/private-endpoint.bicep' = if (usePrivateNetwork) {
  name: 'trustsync-storage-private-endpoint'
  scope: rg
  params: {
    name: 'pe-blob-${resourceToken}'
    location: location
    tags: allTags
    subnetId: network!.outputs.privateEndpointSubnetId
    targetId: storage.outputs.id
    groupId: 'blob'
    privateDnsZoneId: network!.outputs.blobPrivateDnsZoneId
    manualApproval: false
  }
}

// Host storage tables: the Functions host writes its diagnostic events there (AzureWebJobsStorage).
module tablePrivateEndpoint 'modules/private-endpoint.bicep' = if (usePrivateNetwork) {
  name: 'trustsync-table-private-endpoint'
  scope: rg
  params: {
    name: 'pe-table-${resourceToken}'
    location: location
    tags: allTags
    subnetId: network!.outputs.privateEndpointSubnetId
    targetId: storage.outputs.id
    groupId: 'table'
    privateDnsZoneId: network!.outputs.tablePrivateDnsZoneId
    manualApproval: false
  }
}

// The event queue in the dead-letter account, which denies public traffic by default in private mode.
module queuePrivateEndpoint 'modules/private-endpoint.bicep' = if (usePrivateNetwork) {
  name: 'trustsync-queue-private-endpoint'
  scope: rg
  params: {
    name: 'pe-queue-${resourceToken}'
    location: location
    tags: allTags
    subnetId: network!.outputs.privateEndpointSubnetId
    targetId: deadLetterStorage.outputs.id
    groupId: 'queue'
    privateDnsZoneId: network!.outputs.queuePrivateDnsZoneId
    manualApproval: false
  }
}

// The app's inbound path in private mode (its public network access is disabled): resync and the
// scm site from the virtual network or a network peered with it. `azd deploy` from outside that
// network goes through the public scm endpoint instead, which the predeploy hook opens to the
// deployer's address alone for the deployment and the postdeploy hook closes again.
module sitePrivateEndpoint 'modules/private-endpoint.bicep' = if (usePrivateNetwork) {
  name: 'trustsync-site-private-endpoint'
  scope: rg
  params: {
    name: 'pe-site-${resourceToken}'
    location: location
    tags: allTags
    subnetId: network!.outputs.privateEndpointSubnetId
    targetId: functionApp.outputs.id
    groupId: 'sites'
    privateDnsZoneId: network!.outputs.sitesPrivateDnsZoneId
    manualApproval: false
  }
}

// The private endpoint lives in the app resource group (azd down removes it and its connection);
// only the connection is recorded on the vault.
module keyVaultPrivateEndpoint 'modules/private-endpoint.bicep' = if (usePrivateNetwork) {
  name: 'trustsync-keyvault-private-endpoint'
  scope: rg
  params: {
    name: 'pe-vault-${resourceToken}'
    location: location
    tags: allTags
    subnetId: network!.outputs.privateEndpointSubnetId
    targetId: keyVaultId
    groupId: 'vault'
    privateDnsZoneId: network!.outputs.keyVaultPrivateDnsZoneId
    manualApproval: keyVaultPrivateEndpointManualApproval
  }
}

// Host storage: AzureWebJobsStorage and the deployment package. Private mode: private endpoint only.
module storage 'modules/storage.bicep' = {
  name: 'trustsync-storage'
  scope: rg
  params: {
    name: 'sttrustsync${resourceToken}'
    location: location
    tags: allTags
    skuName: storageSkuName
    containerName: deploymentContainerName
    publicNetworkAccess: usePrivateNetwork ? 'Disabled' : 'Enabled'
    networkDefaultAction: usePrivateNetwork ? 'Deny' : 'Allow'
  }
}

// Dead letters and the event queue, in an account of their own: Event Grid writes them through the
// trusted-service exception of the storage firewall, which applies only while public network
// access is Enabled (with default action Deny in private mode). Keeping them apart lets the host
// storage refuse all public traffic. The queue exists in both modes, so on_keyvault_event_queue
// indexes and listens the same everywhere; only private mode's event subscription writes to it.
module deadLetterStorage 'modules/storage.bicep' = {
  name: 'trustsync-deadletter-storage'
  scope: rg
  params: {
    name: 'sttsdl${resourceToken}'
    location: location
    tags: allTags
    skuName: storageSkuName
    containerName: deadLetterContainerName
    queueName: eventQueueName
    publicNetworkAccess: 'Enabled'
    networkDefaultAction: usePrivateNetwork ? 'Deny' : 'Allow'
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
    trustBundles: trustBundles
    trustIntermediates: trustIntermediates
    caStore: caStore
    backendTls: backendTls
    backendCertificates: backendCertificates
    cloudName: cloudName
    armEndpointOverride: armEndpointOverride
    auditSchedule: auditSchedule
    auditRemediate: auditRemediate
    maxConcurrency: maxConcurrency
    rotationGrace: rotationGrace
    deploymentId: deploymentId
    expiryWarningDays: expiryWarningDays
    runTimeBudget: runTimeBudget
    telemetryUsesEntra: telemetryUsesEntra
    virtualNetworkSubnetId: usePrivateNetwork ? network!.outputs.appSubnetId : ''
    publicNetworkAccess: usePrivateNetwork ? 'Disabled' : 'Enabled'
    eventQueueServiceUri: deadLetterStorage.outputs.queueEndpoint
    eventQueueName: eventQueueName
  }
}

module appRbac 'modules/app-rbac.bicep' = {
  name: 'trustsync-app-rbac'
  scope: rg
  params: {
    principalId: functionApp.outputs.principalId
    storageAccountName: storage.outputs.name
    eventQueueStorageAccountName: deadLetterStorage.outputs.name
    eventQueueName: eventQueueName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    grantTelemetryRole: telemetryUsesEntra
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

// The operators' workbook over the same workspace (verdict matrix, expiry horizon, rotations, failures).
module workbook 'modules/workbook.bicep' = {
  name: 'trustsync-workbook'
  scope: rg
  params: {
    location: location
    tags: allTags
    workspaceId: monitoring.outputs.logAnalyticsWorkspaceId
    functionAppName: functionAppName
    keyVaultId: keyVaultId
    eventSubscriptionName: eventSubscriptionName
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
// The plan actually deployed; the postprovision hook compares it with the preprovision hook's choice
// (TRUSTSYNC_HOSTING_PLAN_RESOLVED), which an azd that does not reload its environment after a hook
// would not have passed in.
output TRUSTSYNC_HOSTING_PLAN_DEPLOYED string = useFlex ? 'FlexConsumption' : 'Dedicated'
output TRUSTSYNC_NETWORK_MODE string = networkMode
output TRUSTSYNC_TELEMETRY_AUTHENTICATION string = telemetryUsesEntra ? 'Entra' : 'ConnectionString'
output TRUSTSYNC_PRINCIPAL_ID string = functionApp.outputs.principalId
output TRUSTSYNC_KEYVAULT_NAME string = keyVaultName
output TRUSTSYNC_KEYVAULT_RESOURCE_GROUP string = keyVaultResourceGroupName
output TRUSTSYNC_KEYVAULT_SUBSCRIPTION_ID string = vaultSubscriptionId
output TRUSTSYNC_APIM_RESOURCE_ID string = apimResourceId
output TRUSTSYNC_CERTIFICATE_NAMES string = certificateNames
output TRUSTSYNC_TRUST_BUNDLES string = trustBundles
output TRUSTSYNC_DEADLETTER_STORAGE_ACCOUNT_ID string = deadLetterStorage.outputs.id
output TRUSTSYNC_DEADLETTER_CONTAINER string = deadLetterContainerName
// The queue Event Grid delivers to (private mode); empty = Event Grid pushes to the function.
output TRUSTSYNC_EVENT_QUEUE_NAME string = usePrivateNetwork ? eventQueueName : ''
output TRUSTSYNC_ACTION_GROUP_ID string = alerts.outputs.actionGroupId
output TRUSTSYNC_WORKBOOK_ID string = workbook.outputs.id
output TRUSTSYNC_EVENT_SUBSCRIPTION_NAME string = eventSubscriptionName
output TRUSTSYNC_ACCESS_DEPLOYMENT_NAME string = accessDeploymentName
output TRUSTSYNC_EVENTGRID_DEPLOYMENT_NAME string = eventGridDeploymentName
output TRUSTSYNC_NEW_SYSTEM_TOPIC_NAME string = systemTopicName
