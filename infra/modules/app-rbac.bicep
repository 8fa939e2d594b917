// Data-plane roles the app needs inside its own resource group. Each is scoped to the single
// resource it applies to; assignment names are guid(scope, principal, role), so re-deploying is
// idempotent and the same principal never gets a duplicate.

@description('Principal (object) id of the app identity.')
param principalId string

@description('Host storage account.')
param storageAccountName string

@description('Application Insights component.')
param applicationInsightsName string

@description('Grant Monitoring Metrics Publisher on Application Insights (only when telemetry is sent with Entra ID).')
param grantTelemetryRole bool

var roleIds = {
  // The Functions host needs Storage Blob Data Owner on AzureWebJobsStorage (timer-trigger
  // singleton leases, function keys) and the Flex Consumption deployment container lives in the
  // same account. The host uses blobs only here (no queue or table roles): the app has no
  // queue-, table- or blob-triggered functions.
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // Lets the app send telemetry to an Application Insights component that refuses keys.
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
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
