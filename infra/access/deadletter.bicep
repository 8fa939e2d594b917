// In the app resource group: the Event Grid system topic identity may write undeliverable events
// to the dead-letter container, and to nothing else in the storage account.

@description('Principal (object) id of the system topic system-assigned identity.')
param systemTopicPrincipalId string

@description('App storage account.')
param storageAccountName string

@description('Dead-letter container.')
param containerName string

// Storage Blob Data Contributor: write blobs. Scoped to the container, not the account.
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: containerName
}

resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, systemTopicPrincipalId, storageBlobDataContributor)
  scope: container
  properties: {
    principalId: systemTopicPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    description: 'APIM Trust Sync: Event Grid dead-lettering with the system topic identity.'
  }
}
