// The operators' workbook: every gateway's trust (the verdict matrix), what expires next, what each
// rotation did (events and their writes), failures and dead-lettered events. Its queries read the
// app's TRUSTSYNC_* records and trustsync.* metrics in the workspace (README, Observability);
// tests/test_workbook_queries.py fails when one of them names a record, metric or dimension the
// code does not emit. The content is workbook.json, with this deployment's names put in.

@description('Region.')
param location string

@description('Tags.')
param tags object

@description('Log Analytics workspace that holds the app telemetry (the workbook is saved under it).')
param workspaceId string

@description('Function App name: its cloud role name in the telemetry.')
param functionAppName string

@description('Resource id of the watched Key Vault: the workbook finds its Event Grid system topic by it.')
param keyVaultId string

@description('Event subscription of this deployment (metric dimension EventSubscriptionName).')
param eventSubscriptionName string

@description('Display name of the workbook.')
param displayName string = 'APIM Trust Sync'

var content = replace(replace(replace(replace(replace(loadTextContent('workbook.json'), '__FUNCTION_APP_NAME__', functionAppName), '__WORKSPACE_ID__', workspaceId), '__KEYVAULT_ID__', keyVaultId), '__UPPER_EVENT_SUBSCRIPTION_NAME__', toUpper(eventSubscriptionName)), '__EVENT_SUBSCRIPTION_NAME__', eventSubscriptionName)

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A stable name (workbook names are GUIDs) per resource group and app: redeploying updates it.
  name: guid(resourceGroup().id, functionAppName, 'trustsync-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: workspaceId
    serializedData: content
  }
}

output id string = workbook.id
