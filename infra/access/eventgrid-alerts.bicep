// Metric alerts on the vault's Event Grid system topic, narrowed to this deployment's event
// subscription (a topic can be shared by several deployments on one vault):
//   - dead-lettered events: Event Grid gave up on an event after every retry (30 attempts over
//     24 hours) and wrote it to the dead-letter container. That certificate version was never
//     delivered: the drift audit will still find and report it, but the event itself is lost
//     until someone looks;
//   - failed deliveries: attempts to call on_keyvault_event keep failing (the app is down,
//     unreachable, or failing every run). Event Grid retries, so one failure is not a loss;
//     several in an hour are the warning that dead letters will follow.
// Both notify the action group of the app alerts (the email receiver), when there is one.

@description('Resource id of the system topic.')
param systemTopicId string

@description('Event subscription of this deployment (metric dimension EventSubscriptionName).')
param eventSubscriptionName string

@description('Action group; empty = the alerts fire without notification.')
param actionGroupId string

@description('Suffix that makes the alert names unique.')
param resourceToken string

@description('Tags.')
param tags object

@minValue(1)
@description('Failed delivery attempts in an hour that raise the delivery alert.')
param deliveryFailuresPerHour int = 5

var actionGroups = empty(actionGroupId) ? [] : [
  {
    actionGroupId: actionGroupId
  }
]
// Event Grid reports subscription names in upper case in the metric dimension; both spellings are
// listed so the filter matches whichever the service records.
var subscriptionDimension = [
  {
    name: 'EventSubscriptionName'
    operator: 'Include'
    values: [
      eventSubscriptionName
      toUpper(eventSubscriptionName)
    ]
  }
]

resource deadLetterAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-trustsync-deadletter-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: 'An Event Grid event for APIM Trust Sync was dead-lettered after its last retry: a certificate version was not delivered to on_keyvault_event. Read the blob in the eventgrid-deadletter container (deadLetterReason, lastDeliveryOutcome), fix the cause, then POST /api/resync.'
    severity: 2
    enabled: true
    scopes: [
      systemTopicId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'dead-lettered'
          metricNamespace: 'Microsoft.EventGrid/systemTopics'
          metricName: 'DeadLetteredCount'
          dimensions: subscriptionDimension
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Total'
        }
      ]
    }
    autoMitigate: false
    actions: actionGroups
  }
}

resource deliveryFailureAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-trustsync-delivery-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: 'Event Grid keeps failing to deliver certificate events to on_keyvault_event (dimension Error tells why: the app is stopped, unreachable, or every run fails). Event Grid retries for 24 hours, then dead-letters.'
    severity: 3
    enabled: true
    scopes: [
      systemTopicId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'delivery-failures'
          metricNamespace: 'Microsoft.EventGrid/systemTopics'
          metricName: 'DeliveryAttemptFailCount'
          dimensions: subscriptionDimension
          operator: 'GreaterThanOrEqual'
          threshold: deliveryFailuresPerHour
          timeAggregation: 'Total'
        }
      ]
    }
    autoMitigate: true
    actions: actionGroups
  }
}
