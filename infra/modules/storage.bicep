// A storage account reached with Entra identities only: shared keys are disabled, so no connection
// string exists anywhere in the deployment. main.bicep uses it twice:
//   - host storage of the Function App (AzureWebJobsStorage) with the Flex Consumption deployment
//     package container; in private network mode it refuses all public traffic and is reached
//     through its private endpoint;
//   - the Event Grid dead-letter container, in an account of its own: Event Grid writes dead letters
//     through the storage firewall's trusted-service exception, which only applies while public
//     network access is Enabled (default action Deny in private mode). The same account holds the
//     event queue Event Grid delivers to in private network mode (and its poison queue), for the
//     same reason; the app reads it through the account's queue private endpoint.
//
// The network properties are parameters, not expressions on a mode, so that `make check-infra` can
// render each module call with the values main.bicep passes and checkov checks what each network
// mode deploys. A skip marked [when name=value] applies only to calls where that parameter has that
// value; the renderer drops it from the others, where the check must pass.

@minLength(3)
@maxLength(24)
@description('Storage account name.')
param name string

@description('Region.')
param location string

@description('Tags.')
param tags object

@description('Replication SKU.')
param skuName string

@description('The blob container this account holds.')
param containerName string

@description('Storage queue this account holds, with its poison queue <name>-poison; empty = none.')
param queueName string = ''

@allowed([
  'Enabled'
  'Disabled'
])
@description('Enabled = public endpoint (still Entra-only); Disabled = private endpoints only.')
param publicNetworkAccess string

@allowed([
  'Allow'
  'Deny'
])
@description('Storage firewall default action; Deny lets through only private endpoints and trusted Azure services.')
param networkDefaultAction string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: [when networkDefaultAction=Allow] Public network mode: the app has no VNet integration, so it reaches storage over the public endpoint. Every request still needs an Entra token with a data-plane role: shared keys, SAS and anonymous access are off, TLS 1.2 is required. Private network mode sets Deny.
  // checkov:skip=CKV_AZURE_59: [when publicNetworkAccess=Enabled] Public network mode (host storage) or the dead-letter account: Event Grid writes dead letters (and, in private mode, events to the event queue) through the trusted-service exception, which Azure applies only while public network access is Enabled; in private mode that account still denies by default. Access is identity-only.
  // checkov:skip=CKV_AZURE_206: LRS by default: the account holds only re-creatable state (deployment package, timer leases, function keys, dead letters) and ZRS is not offered in every region (some Azure China regions lack it); the storageSkuName parameter accepts Standard_ZRS, Standard_GRS and Standard_GZRS.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    // No shared keys: AzureWebJobsStorage__credential=managedidentity, identity-authenticated
    // deployment storage, and Event Grid dead-lettering with the system topic identity.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: networkDefaultAction
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}

// The Functions queue trigger moves a message that failed maxDequeueCount times (host.json) to
// <queue>-poison. Created here so the app needs no right to create queues.
var queueNames = empty(queueName) ? [] : [
  queueName
  '${queueName}-poison'
]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = if (!empty(queueName)) {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queue in queueNames: {
  parent: queueService
  name: queue
}]

output id string = storage.id
output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
