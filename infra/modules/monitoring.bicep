// Log Analytics + workspace-based Application Insights.
// The workspace refuses shared-key access in every cloud. Application Insights refuses
// connection-string-only (local) ingestion where the app sends telemetry with Entra ID
// (APPLICATIONINSIGHTS_AUTHENTICATION_STRING, role Monitoring Metrics Publisher in app-rbac.bicep):
// the public cloud, the only one where Microsoft documents Entra-authenticated ingestion. In Azure
// China and US Government the app sends with the connection string, so local authentication must
// stay enabled there or no record would ever arrive (and 'no audit for a day' would fire forever).

@description('Log Analytics workspace name.')
param logAnalyticsName string

@description('Application Insights component name.')
param applicationInsightsName string

@description('Region.')
param location string

@description('Tags.')
param tags object

@description('Retention in days.')
param retentionInDays int

@description('true = Application Insights accepts only Entra-authenticated telemetry; false = the connection string alone is enough (clouds without Entra-authenticated ingestion).')
param disableLocalAuth bool

resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      // Only Entra-authenticated callers may read or ingest: no workspace shared keys.
      disableLocalAuth: true
    }
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    // With Entra-only ingestion the instrumentation key in the connection string is no longer a
    // secret that lets anyone write telemetry.
    DisableLocalAuth: disableLocalAuth
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

output logAnalyticsWorkspaceId string = workspace.id
output applicationInsightsName string = applicationInsights.name
output applicationInsightsId string = applicationInsights.id
