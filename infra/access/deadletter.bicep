// In the app resource group: the Event Grid system topic identity may write undeliverable events
// to the dead-letter container and, in private network mode, events to the event queue; nothing
// else in the storage account.

@description('Principal (object) id of the system topic system-assigned identity.')
param systemTopicPrincipalId string

@description('App storage account.')
param storageAccountName string

@description('Dead-letter container.')
param containerName string

@description('Event queue Event Grid delivers to (main.bicep output TRUSTSYNC_EVENT_QUEUE_NAME); empty = Event Grid pushes to the function (public network mode) and gets no queue role.')
param eventQueueName string = ''

// Storage Blob Data Contributor: write blobs. Scoped to the container, not the account.
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
// Storage Queue Data Message Sender: add messages. Scoped to the event queue, not the account.
var storageQueueDataMessageSender = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
var deliversToQueue = !empty(eventQueueName)

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

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource eventQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: deliversToQueue ? eventQueueName : 'none' // never deployed against without a queue: see eventQueueSender
}

resource eventQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (deliversToQueue) {
  name: guid(eventQueue.id, systemTopicPrincipalId, storageQueueDataMessageSender)
  scope: eventQueue
  properties: {
    principalId: systemTopicPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageSender)
    description: 'APIM Trust Sync: Event Grid delivers certificate events to the event queue with the system topic identity.'
  }
}
