// Azure Monitor log search alerts on the app telemetry in Log Analytics (workspace-based
// Application Insights tables AppTraces and AppRequests):
//   1. the drift audit found drift, failed or only partly ran (its one TRUSTSYNC_AUDIT record per
//      run is neither in-sync nor expiring);
//   2. the latest audit record says a watched certificate is expiring (status expiring);
//   3. a function execution failed;
//   4. no audit record at all for a day (the timer stopped, the app is down, or telemetry is lost).
// The optional email goes to an action group; without one the alerts still fire in the portal.
// The Event Grid delivery alerts (dead letters, failed deliveries) use the same action group; they
// are deployed with the system topic by the postprovision hook (access/eventgrid-alerts.bicep).

@description('Region.')
param location string

@description('Tags.')
param tags object

@description('Suffix that makes the names unique.')
param resourceToken string

@description('Log Analytics workspace that holds the app telemetry.')
param workspaceId string

@description('Function App name: its cloud role name in the telemetry.')
param functionAppName string

@description('Email receiver; empty = no action group.')
param alertEmail string

@description('Raise an alert when no audit record arrived for a day. Turn off if AUDIT_SCHEDULE runs less often than daily.')
param auditMissingAlertEnabled bool = true

@description('Deployment time; the missing-audit alert stays quiet for the first day after a deployment.')
param deployedAt string = utcNow('o')

var hasEmail = !empty(alertEmail)
var actionGroups = hasEmail ? [
  actionGroup.id
] : []

// The audit logs exactly one record per run:
// "TRUSTSYNC_AUDIT status=<in-sync|drift|expiring|partial|failed> {json}".
// A record whose status cannot be read counts as drift: a malformed record is itself news.
var driftQuery = format('''
AppTraces
| where AppRoleName =~ '{0}'
| where Message startswith "TRUSTSYNC_AUDIT "
| extend status = extract(@"^TRUSTSYNC_AUDIT status=([a-z-]+)", 1, Message)
| where status !in ("in-sync", "expiring")
| project TimeGenerated, status, Message
''', functionAppName)

// Only the latest audit record counts: once the certificate is renewed and the next audit is
// in-sync, the alert stops firing.
var expiringQuery = format('''
AppTraces
| where AppRoleName =~ '{0}'
| where Message startswith "TRUSTSYNC_AUDIT "
| summarize arg_max(TimeGenerated, Message)
| extend status = extract(@"^TRUSTSYNC_AUDIT status=([a-z-]+)", 1, Message)
| where status == "expiring"
| project TimeGenerated, status, Message
''', functionAppName)

var failureQuery = format('''
AppRequests
| where AppRoleName =~ '{0}'
| where OperationName in ("on_keyvault_event", "on_keyvault_event_queue", "resync", "drift_audit")
| where Success == false
| project TimeGenerated, OperationName, ResultCode, OperationId
''', functionAppName)

var missingAuditQuery = format('''
AppTraces
| where AppRoleName =~ '{0}'
| where Message startswith "TRUSTSYNC_AUDIT "
| summarize audits = count()
| where audits == 0 and now() > datetime({1}) + 1d
''', functionAppName, deployedAt)

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (hasEmail) {
  name: 'ag-trustsync-${resourceToken}'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'trustsync'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// Window equals frequency, so each audit record is evaluated exactly once.
resource driftAlert 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: 'alert-trustsync-drift-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'APIM Trust Sync: drift or failed audit'
    description: 'The drift audit reported drift between Key Vault CA chains and the APIM gateway trust stores, or failed. Read the TRUSTSYNC_AUDIT record JSON for details.'
    severity: 2
    enabled: true
    scopes: [
      workspaceId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: driftQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'status'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: actionGroups
    }
  }
}

// Evaluated every 6 hours over a day, so the latest audit record of the default 6-hourly schedule
// is always in the window.
resource expiringAlert 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: 'alert-trustsync-expiring-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'APIM Trust Sync: certificate expiring'
    description: 'The latest drift audit reports status expiring: a watched Key Vault certificate expires within EXPIRY_WARNING_DAYS. Renew it in Key Vault; the new version is trusted on its CertificateNewVersionCreated event.'
    severity: 3
    enabled: true
    scopes: [
      workspaceId
    ]
    evaluationFrequency: 'PT6H'
    windowSize: 'P1D'
    criteria: {
      allOf: [
        {
          query: expiringQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

resource failureAlert 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: 'alert-trustsync-failures-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'APIM Trust Sync: function failures'
    description: 'An execution of on_keyvault_event, on_keyvault_event_queue, resync or drift_audit failed. Event Grid retries on_keyvault_event and dead-letters it after the last attempt; the queue redelivers on_keyvault_event_queue and moves the message to the poison queue after the last attempt.'
    severity: 2
    enabled: true
    scopes: [
      workspaceId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: failureQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'OperationName'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: actionGroups
    }
  }
}

resource missingAuditAlert 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = if (auditMissingAlertEnabled) {
  name: 'alert-trustsync-audit-missing-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'APIM Trust Sync: no drift audit for a day'
    description: 'No TRUSTSYNC_AUDIT record in the last 24 hours: the drift_audit timer is not running or its telemetry does not arrive.'
    severity: 3
    enabled: true
    scopes: [
      workspaceId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'P1D'
    criteria: {
      allOf: [
        {
          query: missingAuditQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

// Empty when no email is set; the Event Grid delivery alerts reuse it.
output actionGroupId string = hasEmail ? actionGroup.id : ''
