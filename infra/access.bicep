// Access to the EXISTING Key Vault and API Management service, deployed by the postprovision hook
// (scripts/postprovision.sh|ps1) as its own subscription deployment "trustsync-access-<env>":
//   - Key Vault resource group: the app data-plane roles and the Event Grid system topic;
//   - API Management resource group: a custom role with only the actions the app calls,
//     assigned on the APIM service;
//   - app resource group: the system topic identity may write dead letters, and the metric alerts
//     on the system topic's dead-lettered events and failed deliveries to this app.
// It is kept out of main.bicep because `azd down` deletes every resource group named in the azd
// deployment outputs; the predown hook deletes exactly the resources listed in this deployment
// outputs instead (never the vault, the APIM service or their resource groups).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name.')
param environmentName string

@description('Principal (object) id of the app identity (main.bicep output TRUSTSYNC_PRINCIPAL_ID).')
param principalId string

@description('Existing Key Vault name.')
param keyVaultName string

@description('Region of the existing Key Vault (the system topic is created there).')
param keyVaultLocation string

@description('Existing Key Vault resource group.')
param keyVaultResourceGroupName string

@description('Existing Key Vault subscription; empty = this deployment subscription.')
param keyVaultSubscriptionId string = ''

@description('Existing API Management service resource id.')
param apimResourceId string

@allowed([
  'off'
  'manage'
])
@description('CA_STORE of the app: manage also grants Microsoft.ApiManagement/service/write (the CA store is written by updating the service).')
param caStore string = 'off'

@allowed([
  'off'
  'manage'
])
@description('BACKEND_TLS of the app: manage also grants service/backends/read and write.')
param backendTls string = 'off'

@description('CERTIFICATE_NAMES of the app: * or a comma-separated list.')
param certificateNames string = '*'

@description('TRUST_BUNDLES of the app: empty or a comma-separated list of plain secret names, each granted Key Vault Secrets User on that secret alone.')
param trustBundles string = ''

@description('With named certificates, grant the Key Vault roles on each certificate and its secret instead of the whole vault. false = vault scope (use it if your organisation forbids object-scoped assignments).')
param scopeKeyVaultRolesToObjects bool = true

@description('Name of an Event Grid system topic the vault ALREADY has (a vault can have only one); it must have a system-assigned identity. Empty = create one named newSystemTopicName. The postprovision hook finds it.')
param existingSystemTopicName string = ''

@description('Resource group of that existing system topic; empty = the Key Vault resource group.')
param existingSystemTopicResourceGroup string = ''

@description('Name of the system topic to create when the vault has none (main.bicep output TRUSTSYNC_NEW_SYSTEM_TOPIC_NAME).')
param newSystemTopicName string

@description('Name of this deployment\'s event subscription (main.bicep output TRUSTSYNC_EVENT_SUBSCRIPTION_NAME); the delivery alerts watch it alone on a shared topic.')
param eventSubscriptionName string

@description('Action group of the app alerts (main.bicep output TRUSTSYNC_ACTION_GROUP_ID); empty = alerts without notification.')
param actionGroupId string = ''

@description('Resource id of the app storage account that holds the dead-letter container (main.bicep output TRUSTSYNC_DEADLETTER_STORAGE_ACCOUNT_ID).')
param deadLetterStorageAccountId string

@description('Dead-letter container name (main.bicep output TRUSTSYNC_DEADLETTER_CONTAINER).')
param deadLetterContainerName string

@description('Event queue Event Grid delivers to in private network mode (main.bicep output TRUSTSYNC_EVENT_QUEUE_NAME, in the dead-letter account); empty = public network mode, Event Grid pushes to the function.')
param eventQueueName string = ''

@description('Tags added to the resources created here.')
param tags object = {}

var vaultSubscriptionId = empty(keyVaultSubscriptionId) ? subscription().subscriptionId : keyVaultSubscriptionId
// Split resource ids: index 2 = subscription, 4 = resource group, 8 = resource name.
var apimIdParts = split(apimResourceId, '/')
var allTags = union(tags, {
  'azd-env-name': environmentName
  application: 'apim-trust-sync'
})
var deadLetterIdParts = split(deadLetterStorageAccountId, '/')
// Nested deployment names must fit ARM's 64 characters for any environment name (1-64): a name
// that fits stays as it is, a longer one is cut and made unique with a hash of the whole name.
// They are built from the same name token as main.bicep's names: the environment name when it
// holds only letters, digits and hyphens, else those characters and a hash of the original.
var nameSafe = replace(replace(replace(replace(environmentName, '_', '-'), '.', '-'), '(', '-'), ')', '-')
var nameToken = (nameSafe == environmentName) ? environmentName : '${nameSafe}-${take(uniqueString(environmentName), 6)}'
var keyVaultDeploymentFull = 'trustsync-keyvault-access-${nameToken}'
var keyVaultDeploymentName = (length(keyVaultDeploymentFull) <= 64) ? keyVaultDeploymentFull : '${take(keyVaultDeploymentFull, 50)}-${uniqueString(keyVaultDeploymentFull)}'
var apimDeploymentFull = 'trustsync-apim-access-${nameToken}'
var apimDeploymentName = (length(apimDeploymentFull) <= 64) ? apimDeploymentFull : '${take(apimDeploymentFull, 50)}-${uniqueString(apimDeploymentFull)}'
var deadLetterDeploymentFull = 'trustsync-deadletter-access-${nameToken}'
var deadLetterDeploymentName = (length(deadLetterDeploymentFull) <= 64) ? deadLetterDeploymentFull : '${take(deadLetterDeploymentFull, 50)}-${uniqueString(deadLetterDeploymentFull)}'
var alertsDeploymentFull = 'trustsync-eventgrid-alerts-${nameToken}'
var alertsDeploymentName = (length(alertsDeploymentFull) <= 64) ? alertsDeploymentFull : '${take(alertsDeploymentFull, 50)}-${uniqueString(alertsDeploymentFull)}'

module keyVaultAccess 'access/keyvault.bicep' = {
  name: keyVaultDeploymentName
  scope: resourceGroup(vaultSubscriptionId, keyVaultResourceGroupName)
  params: {
    principalId: principalId
    keyVaultName: keyVaultName
    keyVaultLocation: keyVaultLocation
    certificateNames: certificateNames
    scopeToObjects: scopeKeyVaultRolesToObjects
    trustBundles: trustBundles
    existingSystemTopicName: existingSystemTopicName
    existingSystemTopicResourceGroup: existingSystemTopicResourceGroup
    newSystemTopicName: newSystemTopicName
    tags: allTags
  }
}

module apimAccess 'access/apim.bicep' = {
  name: apimDeploymentName
  scope: resourceGroup(apimIdParts[2], apimIdParts[4])
  params: {
    principalId: principalId
    apimName: apimIdParts[8]
    environmentName: environmentName
    caStore: caStore
    backendTls: backendTls
  }
}

module deadLetterAccess 'access/deadletter.bicep' = {
  name: deadLetterDeploymentName
  scope: resourceGroup(deadLetterIdParts[2], deadLetterIdParts[4])
  params: {
    systemTopicPrincipalId: keyVaultAccess.outputs.systemTopicPrincipalId
    storageAccountName: deadLetterIdParts[8]
    containerName: deadLetterContainerName
    eventQueueName: eventQueueName
  }
}

// In the app resource group, next to the other alerts, so azd down removes them with it.
module eventGridAlerts 'access/eventgrid-alerts.bicep' = {
  name: alertsDeploymentName
  scope: resourceGroup(deadLetterIdParts[2], deadLetterIdParts[4])
  params: {
    systemTopicId: keyVaultAccess.outputs.systemTopicId
    eventSubscriptionName: eventSubscriptionName
    actionGroupId: actionGroupId
    resourceToken: uniqueString(deadLetterStorageAccountId)
    tags: allTags
  }
}

output TRUSTSYNC_SYSTEM_TOPIC_NAME string = keyVaultAccess.outputs.systemTopicName
output TRUSTSYNC_APIM_ROLE_DEFINITION_ID string = apimAccess.outputs.roleDefinitionId
