// Host storage of the Function App (AzureWebJobsStorage), its deployment package container (Flex
// Consumption) and the Event Grid dead-letter container. Reached with Entra identities only:
// shared keys are disabled, so no connection string exists anywhere in the deployment.

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

@description('Container that holds the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Container Event Grid writes undeliverable events to.')
param deadLetterContainerName string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Default action Allow: the app has no VNet integration (Flex Consumption, and the China fallback plan, reach storage over its public endpoint). Every request still needs an Entra token with a data-plane role: shared keys, SAS and anonymous access are off, TLS 1.2 is required. Adding VNet integration plus private endpoints is the way to close it.
  // checkov:skip=CKV_AZURE_59: Public network access stays enabled for the reason given for CKV_AZURE_35; access is identity-only.
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
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
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

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

output id string = storage.id
output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
