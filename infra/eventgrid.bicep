// The Event Grid subscription that delivers the vault certificate events to on_keyvault_event.
// Deployed by the postdeploy hook (scripts/postdeploy.sh|ps1) into the Key Vault resource group as
// deployment "trustsync-eventgrid-<env>": Event Grid validates an AzureFunction endpoint when the
// subscription is written, so the function must already be deployed and indexed. That is the
// ordering problem azd templates solve with a postdeploy hook; re-running it is a no-op (same
// name, same properties, PUT semantics).

@description('Event Grid system topic of the vault (access.bicep output TRUSTSYNC_SYSTEM_TOPIC_NAME).')
param systemTopicName string

@description('Resource id of the Function App (main.bicep output AZURE_FUNCTION_APP_ID).')
param functionAppId string

@description('Resource id of the storage account with the dead-letter container.')
param deadLetterStorageAccountId string

@description('Dead-letter container name.')
param deadLetterContainerName string

@description('CERTIFICATE_NAMES of the app: * or a comma-separated list. Named certificates also filter the events by subject.')
param certificateNames string = '*'

@description('azd environment name; names the subscription, so several environments can share one vault.')
param environmentName string

@minValue(1)
@maxValue(30)
@description('Delivery attempts before an event is dead-lettered.')
param maxDeliveryAttempts int = 30

@minValue(1)
@maxValue(1440)
@description('Minutes an event is retried before it is dead-lettered.')
param eventTimeToLiveInMinutes int = 1440

// The only Key Vault event the app handles. It does not subscribe to near-expiry or expired
// events (CertificateNearExpiry, CertificateExpired): on_keyvault_event ignores them.
var includedEventTypes = [
  'Microsoft.KeyVault.CertificateNewVersionCreated'
]
var functionName = 'on_keyvault_event'
var allCertificates = trim(certificateNames) == '*'
// For Key Vault events the subject is the object name, so named certificates filter by subject.
var subjectFilters = allCertificates ? [] : [
  {
    operatorType: 'StringIn'
    key: 'subject'
    values: split(replace(certificateNames, ' ', ''), ',')
  }
]

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource certificateEvents 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: 'trustsync-${environmentName}'
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${functionName}'
        // One event per invocation: a failure retries and dead-letters only that certificate.
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: includedEventTypes
      advancedFilters: subjectFilters
    }
    // Explicit instead of relying on the service defaults: retry for a day (an APIM outage or
    // throttling outlasts minutes), then dead-letter rather than drop.
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    // Written with the system topic managed identity (Storage Blob Data Contributor on this
    // container only, access/deadletter.bicep): the storage account accepts no keys or SAS.
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output eventSubscriptionId string = certificateEvents.id
