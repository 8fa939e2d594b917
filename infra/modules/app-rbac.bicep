// Data-plane roles the app needs inside its own resource group. Each is scoped to the single
// resource it applies to; assignment names are guid(scope, principal, role), so re-deploying is
// idempotent and the same principal never gets a duplicate.

@description('Principal (object) id of the app identity.')
param principalId string

@description('Host storage account.')
param storageAccountName string

@description('Account of the event queue (the dead-letter account).')
param eventQueueStorageAccountName string

@description('Event queue on_keyvault_event_queue reads; its poison queue is <name>-poison.')
param eventQueueName string

@description('Application Insights component.')
param applicationInsightsName string

@description('Grant Monitoring Metrics Publisher on Application Insights (only when telemetry is sent with Entra ID).')
param grantTelemetryRole bool

var roleIds = {
  // The Functions host needs Storage Blob Data Owner on AzureWebJobsStorage (timer-trigger
  // singleton leases, function keys) and the Flex Consumption deployment container lives in the
  // same account. The host uses blobs only here (no queue or table roles): the queue-triggered
  // function reads its queue in the dead-letter account, below.
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // The queue trigger (identity-based connection EventQueue): read the queue's properties (its
  // length, for scaling) and receive, update and delete its messages. On the event queue only.
  storageQueueDataReader: '19e7f393-937e-4f77-808e-94535e297925'
  storageQueueDataMessageProcessor: '8a0f0c08-91a1-4084-bc3d-661d67233fed'
  // After maxDequeueCount (host.json) the host moves a message to <queue>-poison, creating that
  // queue if it is missing. On the poison queue only.
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  // Lets the app send telemetry to an Application Insights component that refuses keys.
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource eventQueueStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: eventQueueStorageAccountName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: eventQueueStorage
  name: 'default'
}

resource eventQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: eventQueueName
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: '${eventQueueName}-poison'
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource hostStorageRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roleIds.storageBlobDataOwner)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataOwner)
    description: 'APIM Trust Sync: Functions host storage and deployment package (identity-based, no keys).'
  }
}

resource telemetryRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantTelemetryRole) {
  name: guid(applicationInsights.id, principalId, roleIds.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.monitoringMetricsPublisher)
    description: 'APIM Trust Sync: Entra-authenticated telemetry ingestion.'
  }
}

resource eventQueueReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventQueue.id, principalId, roleIds.storageQueueDataReader)
  scope: eventQueue
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageQueueDataReader)
    description: 'APIM Trust Sync: the queue trigger reads the event queue (length, for scaling).'
  }
}

resource eventQueueProcessor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventQueue.id, principalId, roleIds.storageQueueDataMessageProcessor)
  scope: eventQueue
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageQueueDataMessageProcessor)
    description: 'APIM Trust Sync: the queue trigger receives and deletes the events Event Grid queued.'
  }
}

resource poisonQueueWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(poisonQueue.id, principalId, roleIds.storageQueueDataContributor)
  scope: poisonQueue
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageQueueDataContributor)
    description: 'APIM Trust Sync: the queue trigger moves a message that kept failing to the poison queue.'
  }
}
