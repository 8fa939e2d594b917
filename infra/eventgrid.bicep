// The Event Grid subscription that delivers the vault certificate events to the app:
//   - public network mode (eventQueueName empty): pushed to on_keyvault_event (AzureFunction
//     endpoint) on the app's public endpoint;
//   - private network mode: written to the event queue in the dead-letter account (StorageQueue
//     endpoint), through the storage firewall's trusted-service exception with the system topic
//     identity (Storage Queue Data Message Sender on that queue only, access/deadletter.bicep);
//     on_keyvault_event_queue pulls them over the queue private endpoint, so the app needs no
//     public endpoint.
// Deployed by the postdeploy hook (scripts/postdeploy.sh|ps1) into the resource group of the
// vault's system topic as deployment "trustsync-eventgrid-<env>": Event Grid validates an
// AzureFunction endpoint when the subscription is written, so the function must already be
// deployed and indexed. That is the ordering problem azd templates solve with a postdeploy hook;
// re-running it is a no-op (same name, same properties, PUT semantics).
//
// One source of truth for the certificates: the subscription delivers the certificate events of
// the whole vault and the app setting CERTIFICATE_NAMES alone decides which certificates are
// synced (on_keyvault_event logs and ignores the others). A subject filter written from the names
// at deploy time would silently drift from the setting when it is changed later, and Event Grid
// caps advanced filter values (25 across all advanced filters of a subscription), which a long
// name list would exceed. Certificate events are rare (a rotation, an expiry warning), so the
// unfiltered deliveries cost nothing worth a second list.

@description('Event Grid system topic of the vault (access.bicep output TRUSTSYNC_SYSTEM_TOPIC_NAME).')
param systemTopicName string

@description('Resource id of the Function App (main.bicep output AZURE_FUNCTION_APP_ID).')
param functionAppId string

@description('Resource id of the storage account with the dead-letter container.')
param deadLetterStorageAccountId string

@description('Dead-letter container name.')
param deadLetterContainerName string

@description('Event queue in the dead-letter account (main.bicep output TRUSTSYNC_EVENT_QUEUE_NAME); empty = push to on_keyvault_event (public network mode).')
param eventQueueName string = ''

@minLength(3)
@maxLength(64)
@description('Name of the event subscription (main.bicep output TRUSTSYNC_EVENT_SUBSCRIPTION_NAME, from the environment name), so several environments can share one vault and its topic.')
param eventSubscriptionName string

@minValue(1)
@maxValue(30)
@description('Delivery attempts before an event is dead-lettered.')
param maxDeliveryAttempts int = 30

@minValue(1)
@maxValue(1440)
@description('Minutes an event is retried before it is dead-lettered.')
param eventTimeToLiveInMinutes int = 1440

// The Key Vault events the app handles: a new version to trust, the expiry warnings it logs and
// reconciles on, and a new version of a secret: TRUST_BUNDLES (the app setting) alone decides which
// secrets are trust bundles, as CERTIFICATE_NAMES does for certificates; the app ignores the others.
var includedEventTypes = [
  'Microsoft.KeyVault.CertificateNewVersionCreated'
  'Microsoft.KeyVault.CertificateNearExpiry'
  'Microsoft.KeyVault.CertificateExpired'
  'Microsoft.KeyVault.SecretNewVersionCreated'
]
var functionName = 'on_keyvault_event'
var deliversToQueue = !empty(eventQueueName)

var functionDestination = {
  endpointType: 'AzureFunction'
  properties: {
    resourceId: '${functionAppId}/functions/${functionName}'
    // One event per invocation: a failure retries and dead-letters only that certificate.
    maxEventsPerBatch: 1
    preferredBatchSizeInKilobytes: 64
  }
}

// One event per message (a queue message holds one event), in the Event Grid schema.
var queueDestination = {
  endpointType: 'StorageQueue'
  properties: {
    resourceId: deadLetterStorageAccountId
    queueName: eventQueueName
    // Message time to live: the service default (7 days); an app stopped for longer catches up at
    // its next drift audit.
  }
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource certificateEvents 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: eventSubscriptionName
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    // The function endpoint is set here; the queue is written with the system topic identity
    // (deliveryWithResourceIdentity below), the only identity a storage firewall lets through.
    destination: deliversToQueue ? null : functionDestination
    deliveryWithResourceIdentity: deliversToQueue ? {
      identity: {
        type: 'SystemAssigned'
      }
      destination: queueDestination
    } : null
    // Event types only: no subject or advanced filter (see the top of this file).
    filter: {
      includedEventTypes: includedEventTypes
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
