// The site configuration only a Dedicated (App Service) plan takes. function-app.bicep deploys it
// for the Dedicated plan alone: Flex Consumption rejects these properties in siteConfig (ARM error
// 51021 names FtpsState, Use32BitWorkerProcess, NetFrameworkVersion,
// FunctionsRuntimeScaleMonitoringEnabled and LinuxFxVersion), so they are never part of the site.
// A sites/config PUT changes only the properties it names.

@description('Function App on the Dedicated plan.')
param siteName string

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: siteName
}

resource webConfig 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13: App Service Authentication (Easy Auth) would put an interactive sign-in in front of Event Grid's webhook delivery; every function requires a function key instead, and Event Grid presents the system key.
  // checkov:skip=CKV_AZURE_63: HTTP logging is an App Service web-server log on the file system; this Functions app sends requests and traces to Application Insights, which the alerts query.
  // checkov:skip=CKV_AZURE_65: Detailed error pages are an IIS feature for Windows web apps; this is a Linux Python Functions app whose errors go to Application Insights.
  // checkov:skip=CKV_AZURE_66: Failed request tracing is an IIS feature for Windows web apps; on Linux it does nothing, and failed executions are already in Application Insights (function failures alert).
  // checkov:skip=CKV_AZURE_80: netFrameworkVersion applies to .NET apps; this is a Python 3.11 app on Linux (linuxFxVersion below), and setting it would add a property the app does not use.
  // checkov:skip=CKV_AZURE_88: Azure Files is deliberately absent: the Dedicated plan runs from its deployment package and the host uses identity-based blob storage, so no storage key or file share exists.
  // checkov:skip=CKV_AZURE_222: This resource holds only the runtime stack, Always On and FTPS state; public network access is a property of the site itself, where its in-line skip gives the reason.
  parent: site
  name: 'web'
  properties: {
    linuxFxVersion: 'Python|3.11'
    // The Dedicated plan unloads idle apps, which would stop the drift-audit timer.
    alwaysOn: true
    // FTP cannot sign in anyway: basic publishing credentials are disabled on the site.
    ftpsState: 'Disabled'
  }
}
