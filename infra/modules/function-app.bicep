// The Function App (Python 3.11, v2 programming model) and its plan.
// Flex Consumption by default; a Linux App Service plan where the region does not offer Flex
// Consumption (the preprovision hook decides). Both plans run without Azure Files and without any
// storage key.
//
// Flex Consumption rejects a site whose siteConfig carries properties that only the other plans
// have (ARM error 51021: "Site.SiteConfig.FtpsState, Site.SiteConfig.Use32BitWorkerProcess,
// Site.SiteConfig.NetFrameworkVersion, Site.SiteConfig.FunctionsRuntimeScaleMonitoringEnabled for
// Flex Consumption sites is invalid", and likewise LinuxFxVersion), even when they are null. So the
// site's siteConfig holds only properties every plan accepts, and what only the Dedicated plan
// takes (runtime stack, Always On, FTPS state) is a separate sites/config resource deployed for the
// Dedicated plan alone.

@description('Function App name.')
param name string

@description('Plan name.')
param planName string

@description('Region.')
param location string

@description('Tags.')
param tags object

@description('true = Flex Consumption plan; false = Linux App Service (Dedicated) plan.')
param useFlex bool

@description('SKU of the Dedicated plan (used when useFlex is false).')
param dedicatedPlanSku string

@description('Flex Consumption instance memory (MB).')
param flexInstanceMemoryMB int

@description('Flex Consumption scale-out ceiling.')
param flexMaximumInstanceCount int

@description('true = the app runs as the user-assigned identity below; false = as its system-assigned identity.')
param useUserAssigned bool

@description('Resource id of the user-assigned identity; empty when system-assigned.')
param userAssignedIdentityId string

@description('Client id of the user-assigned identity; empty when system-assigned.')
param userAssignedIdentityClientId string

@description('Principal (object) id of the user-assigned identity; empty when system-assigned.')
param userAssignedIdentityPrincipalId string

@description('Host storage account (same resource group).')
param storageAccountName string

@description('Blob container of the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Application Insights component (same resource group).')
param applicationInsightsName string

// App settings read by the code (shared/settings.py SETTINGS); main.bicep documents each.

@description('KEYVAULT_URL')
param keyVaultUrl string

@description('APIM_RESOURCE_ID')
param apimResourceId string

@description('APIM_GATEWAYS')
param apimGateways string

@description('CERTIFICATE_NAMES')
param certificateNames string

@description('TRUST_BUNDLES')
param trustBundles string

@description('TRUST_INTERMEDIATES')
param trustIntermediates bool

@description('AZURE_CLOUD: environment().name of the deployment (AzureCloud, AzureChinaCloud, AzureUSGovernment).')
param cloudName string

@description('ARM_ENDPOINT: empty = default of AZURE_CLOUD.')
param armEndpointOverride string

@description('AUDIT_SCHEDULE')
param auditSchedule string

@description('CA_STORE: off or manage')
param caStore string

@description('BACKEND_TLS: off or manage')
param backendTls string

@description('BACKEND_CERTIFICATES: backend-id=certificate-name,...')
param backendCertificates string

@description('AUDIT_REMEDIATE: false, additions or true')
param auditRemediate string

@description('MAX_CONCURRENCY')
param maxConcurrency int

@description('ROTATION_GRACE')
param rotationGrace string

@description('DEPLOYMENT_ID (empty: derived from the app\'s name)')
param deploymentId string

@description('EXPIRY_WARNING_DAYS')
param expiryWarningDays int

@description('RUN_TIME_BUDGET: seconds a run may take, e.g. 540s (the function timeout less a margin).')
param runTimeBudget string

@description('true = telemetry is sent with Entra ID (APPLICATIONINSIGHTS_AUTHENTICATION_STRING); false = with the connection string alone.')
param telemetryUsesEntra bool

@description('Subnet the app is integrated into (private network mode); empty = no VNet integration.')
param virtualNetworkSubnetId string

@allowed([
  'Enabled'
  'Disabled'
])
@description('Enabled (public network mode) = the app answers on its public endpoint; Disabled (private network mode) = only through its private endpoint in the virtual network.')
param publicNetworkAccess string

@description('Queue service endpoint of the account that holds the event queue (the dead-letter account).')
param eventQueueServiceUri string

@description('EVENT_QUEUE_NAME: the queue on_keyvault_event_queue reads (Event Grid delivers to it in private network mode).')
param eventQueueName string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// App settings are {name, value} arrays joined with concat() rather than an object turned into
// an array with a for-expression: Bicep requires a for-expression's input to be known when the
// deployment starts, and these values (storage endpoint, connection string) are not.

// Settings the code reads. Every name in shared.settings.SETTINGS must be here;
// tests/infra/test_bicep_intent.py imports SETTINGS and fails when one is missing.
var trustSyncSettings = [
  {
    name: 'KEYVAULT_URL'
    value: keyVaultUrl
  }
  {
    name: 'APIM_RESOURCE_ID'
    value: apimResourceId
  }
  {
    name: 'APIM_GATEWAYS'
    value: apimGateways
  }
  {
    name: 'CERTIFICATE_NAMES'
    value: certificateNames
  }
  {
    name: 'TRUST_BUNDLES'
    value: trustBundles
  }
  {
    name: 'TRUST_INTERMEDIATES'
    value: trustIntermediates ? 'true' : 'false'
  }
  {
    name: 'CA_STORE'
    value: caStore
  }
  {
    name: 'BACKEND_TLS'
    value: backendTls
  }
  {
    name: 'BACKEND_CERTIFICATES'
    value: backendCertificates
  }
  {
    name: 'AZURE_CLOUD'
    value: cloudName
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: userAssignedIdentityClientId
  }
  {
    name: 'ARM_ENDPOINT'
    value: armEndpointOverride
  }
  {
    name: 'AUDIT_SCHEDULE'
    value: auditSchedule
  }
  {
    name: 'AUDIT_REMEDIATE'
    value: auditRemediate
  }
  {
    name: 'MAX_CONCURRENCY'
    value: string(maxConcurrency)
  }
  {
    name: 'ROTATION_GRACE'
    value: rotationGrace
  }
  {
    name: 'DEPLOYMENT_ID'
    value: deploymentId
  }
  {
    name: 'EXPIRY_WARNING_DAYS'
    value: string(expiryWarningDays)
  }
  {
    name: 'RUN_TIME_BUDGET'
    value: runTimeBudget
  }
]

// Settings the Functions host reads: identity-based host storage (no AzureWebJobsStorage
// connection string exists), the event queue's identity-based connection "EventQueue" and queue
// name (bindings of on_keyvault_event_queue in function_app.py; both network modes, so the function
// indexes the same everywhere) and the Application Insights connection string.
var hostSettings = [
  {
    name: 'EVENT_QUEUE_NAME'
    value: eventQueueName
  }
  {
    name: 'EventQueue__queueServiceUri'
    value: eventQueueServiceUri
  }
  {
    name: 'EventQueue__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__blobServiceUri'
    value: storage.properties.primaryEndpoints.blob
  }
  // The host writes its diagnostic events to Table storage of AzureWebJobsStorage; without the
  // table endpoint an identity-based connection has none and those events are lost (AZFD0003).
  {
    name: 'AzureWebJobsStorage__tableServiceUri'
    value: storage.properties.primaryEndpoints.table
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: applicationInsights.properties.ConnectionString
  }
]

// Entra-authenticated ingestion (public cloud): the component then refuses the connection string
// alone (monitoring.bicep disables local authentication in the same case).
var entraTelemetrySettings = [
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: useUserAssigned ? 'ClientId=${userAssignedIdentityClientId};Authorization=AAD' : 'Authorization=AAD'
  }
]

// With a user-assigned identity the host must be told which identity to use for storage.
var userAssignedHostSettings = [
  {
    name: 'AzureWebJobsStorage__clientId'
    value: userAssignedIdentityClientId
  }
  {
    name: 'EventQueue__clientId'
    value: userAssignedIdentityClientId
  }
]

// Only the Dedicated plan reads these. Flex Consumption rejects FUNCTIONS_WORKER_RUNTIME and
// FUNCTIONS_EXTENSION_VERSION (runtime and version live in functionAppConfig) and deploys from
// its blob container, so it never sees WEBSITE_RUN_FROM_PACKAGE either.
var dedicatedOnlySettings = [
  {
    name: 'FUNCTIONS_EXTENSION_VERSION'
    value: '~4'
  }
  {
    name: 'FUNCTIONS_WORKER_RUNTIME'
    value: 'python'
  }
  {
    name: 'SCM_DO_BUILD_DURING_DEPLOYMENT'
    value: 'true'
  }
  {
    name: 'ENABLE_ORYX_BUILD'
    value: 'true'
  }
]

var appSettings = concat(trustSyncSettings, hostSettings, telemetryUsesEntra ? entraTelemetrySettings : [], useUserAssigned ? userAssignedHostSettings : [], useFlex ? [] : dedicatedOnlySettings)

var useVnet = !empty(virtualNetworkSubnetId)

// Inbound: public network mode keeps the public endpoint (Event Grid pushes to on_keyvault_event;
// every function needs a key). Private network mode disables it: Event Grid delivers to the event
// queue, which the app pulls, so the site is reached only through its private endpoint (resync
// and the scm site for deployments, from the virtual network or a network peered with it).
var publicAccessEnabled = publicNetworkAccess == 'Enabled'

var identityConfig = useUserAssigned ? {
  type: 'UserAssigned'
  userAssignedIdentities: {
    '${userAssignedIdentityId}': {}
  }
} : {
  type: 'SystemAssigned'
}

// Flex Consumption pulls the package from a blob container, authenticated with the app identity:
// no SAS, no storage key, no WEBSITE_RUN_FROM_PACKAGE.
var deploymentStorageAuthentication = useUserAssigned ? {
  type: 'UserAssignedIdentity'
  userAssignedIdentityResourceId: userAssignedIdentityId
} : {
  type: 'SystemAssignedIdentity'
}

var flexFunctionAppConfig = {
  deployment: {
    storage: {
      type: 'blobContainer'
      value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
      authentication: deploymentStorageAuthentication
    }
  }
  scaleAndConcurrency: {
    instanceMemoryMB: flexInstanceMemoryMB
    maximumInstanceCount: flexMaximumInstanceCount
  }
  runtime: {
    name: 'python'
    version: '3.11'
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Zone redundancy is a per-region Flex Consumption capability (and costs at least two always-ready instances); the app is an idempotent sync job: Event Grid retries deliveries for a day and the drift audit re-converges after a zone outage.
  name: planName
  location: location
  tags: tags
  kind: useFlex ? 'functionapp' : 'linux'
  sku: useFlex ? {
    name: 'FC1'
    tier: 'FlexConsumption'
  } : {
    name: dedicatedPlanSku
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_16: False positive: identity comes from identityConfig (UserAssigned by default, SystemAssigned by parameter), which checkov cannot evaluate; tests/infra/test_bicep_intent.py asserts both shapes.
  // checkov:skip=CKV_AZURE_71: Same false positive as CKV_AZURE_16: the managed identity is always set, through identityConfig.
  // checkov:skip=CKV_AZURE_17: Callers authenticate with function keys (resync is AuthLevel.FUNCTION, Event Grid uses the system key); Event Grid delivery presents no client certificate, so requiring one would stop certificate events.
  // checkov:skip=CKV_AZURE_222: [when publicNetworkAccess=Enabled] Public network mode: Event Grid pushes certificate events to on_keyvault_event on the public endpoint (push delivery to an AzureFunction endpoint has no private path). HTTPS only, TLS 1.2, no basic-auth publishing, every function needs a key. Private network mode disables public network access: events arrive through the storage queue.
  // checkov:skip=CKV_AZURE_78: FTP is off through basicPublishingCredentialsPolicies ftp (allow false; FTP has no other sign-in). Flex Consumption rejects siteConfig.ftpsState, so the site leaves it out; the Dedicated plan also sets ftpsState Disabled in its sites/config resource.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales to zero by design and the Dedicated fallback is one instance; missed work is not lost: Event Grid retries for 24 hours, then dead-letters, and the drift audit repairs drift.
  // checkov:skip=CKV_AZURE_213: App Service health check needs an anonymous HTTP endpoint to probe; the app exposes none on purpose (every function requires a key) and the Functions platform restarts an unhealthy host itself.
  name: name
  location: location
  // azd finds the code's deployment target by this tag (service "trustsync" in azure.yaml).
  tags: union(tags, {
    'azd-service-name': 'trustsync'
  })
  kind: 'functionapp,linux'
  identity: identityConfig
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    publicNetworkAccess: publicNetworkAccess
    functionAppConfig: useFlex ? flexFunctionAppConfig : null
    virtualNetworkSubnetId: useVnet ? virtualNetworkSubnetId : null
    // Only what every plan accepts (see the top of this file); nothing Flex Consumption rejects.
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      remoteDebuggingEnabled: false
      // No per-address rules: the public endpoint is open to keyed calls or, in private mode, off.
      ipSecurityRestrictions: []
      ipSecurityRestrictionsDefaultAction: publicAccessEnabled ? 'Allow' : 'Deny'
      // Private mode: the scm site too denies every public address. The predeploy hook adds the
      // deployer's address and turns public network access on for `azd deploy` only; the
      // postdeploy hook (or the next provision, which writes these values again) closes it.
      scmIpSecurityRestrictions: []
      scmIpSecurityRestrictionsDefaultAction: publicAccessEnabled ? 'Allow' : 'Deny'
      scmIpSecurityRestrictionsUseMain: false
      appSettings: appSettings
    }
  }
}

// Dedicated plan only: the runtime stack (Flex Consumption takes it from functionAppConfig), Always
// On (an idle Dedicated app is unloaded, which would stop the drift-audit timer) and FTPS off. A
// module of its own, so the Flex Consumption site never receives these properties.
module dedicatedSiteConfig 'dedicated-site-config.bicep' = if (!useFlex) {
  name: 'trustsync-dedicated-site-config'
  params: {
    siteName: site.name
  }
}

// Publishing with FTP or SCM basic credentials is off: azd deploys with an Entra token.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output id string = site.id
output url string = 'https://${site.properties.defaultHostName}'
// The principal every role assignment is granted to.
output principalId string = useUserAssigned ? userAssignedIdentityPrincipalId : site.identity.principalId
