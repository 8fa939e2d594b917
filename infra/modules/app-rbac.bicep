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

// The queue trigger (identity-based connection EventQueue) reads the queue's length, receives
// messages, deletes a processed one and, when a run fails or runs long, updates a message: its
// visibility. Update Message needs queues/messages/write, which Storage Queue Data Reader and
// Message Processor lack, so every failed run would log a 403. Storage Queue Data Contributor is
// the one built-in role with read, process, write and delete; it is granted on the event queue
// only. After maxDequeueCount (host.json) the host moves a message to <queue>-poison, creating that
// queue if it is missing: the same role on the poison queue only.
var roleIds = {
  // The Functions host needs Storage Blob Data Owner on AzureWebJobsStorage (timer-trigger
  // singleton leases, function keys) and the Flex Consumption deployment container lives in the
  // same account.
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // The host also writes its diagnostic events to Table storage of AzureWebJobsStorage (read,
  // write, delete, add and create: AZFD0003). Only the host account; the app keeps no tables.
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  // The queue trigger on the event queue and its poison queue (see the assignments below).
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

resource hostTableRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roleIds.storageTableDataContributor)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageTableDataContributor)
    description: 'APIM Trust Sync: Functions host diagnostic events in host storage tables.'
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

resource eventQueueProcessor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventQueue.id, principalId, roleIds.storageQueueDataContributor)
  scope: eventQueue
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageQueueDataContributor)
    description: 'APIM Trust Sync: the queue trigger receives, updates (releases, renews) and deletes the events Event Grid queued.'
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
