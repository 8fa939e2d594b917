// In the Key Vault resource group: the app data-plane roles on the vault (or on each watched
// certificate) and the Event Grid system topic that publishes the vault certificate events.
//
// What the app does on the vault: it lists certificate versions (certificate metadata) and reads
// secret versions, because a certificate CA chain is stored only in the certificate backing
// secret (same name as the certificate). It never writes. Hence exactly two roles:
//   Key Vault Secrets User  (4633458b-...): secrets/getSecret + readMetadata, to read the chain.
//   Key Vault Reader        (21090545-...): metadata of vault objects, never a value, to list
//                                            certificate versions.
// Why Reader and not Key Vault Certificate User: Certificate User also carries
// secrets/getSecret and keys/read; granted on the vault it would read every secret value on its
// own. Reader carries no value, so removing Secrets User later really removes all value access.
//
// Narrowest scope Azure allows: Key Vault RBAC accepts assignments on an individual secret
// (Microsoft.KeyVault/vaults/secrets, an ARM resource type) and on an individual certificate
// (.../vaults/{vault}/certificates/{name}; the Key Vault RBAC guide documents per-key, per-secret
// and per-certificate assignments). Certificates are no ARM resource type, so Bicep cannot
// type-check that scope and warns BCP081; the assignment itself is a plain ARM role assignment.
// With CERTIFICATE_NAMES = * the app must list the whole vault, so the vault is the scope.
// Trust bundles (TRUST_BUNDLES, plain secrets of CA certificates) get Secrets User each, on the
// secret alone, wherever the certificates are scoped per object.

@description('Principal (object) id of the app identity.')
param principalId string

@description('Existing Key Vault (Azure RBAC permission model).')
param keyVaultName string

@description('Region of the vault: a system topic must be in the region of its source.')
param keyVaultLocation string

@description('* or a comma-separated list of certificate names.')
param certificateNames string

@description('Grant per certificate and per secret when certificates are named.')
param scopeToObjects bool

@description('TRUST_BUNDLES of the app: empty or a comma-separated list of plain secret names.')
param trustBundles string = ''

@description('Name of an existing system topic of this vault; empty = create one named newSystemTopicName.')
param existingSystemTopicName string

@description('Resource group of the existing system topic; empty = the vault resource group.')
param existingSystemTopicResourceGroup string

@description('Name of the system topic to create when the vault has none (main.bicep output TRUSTSYNC_NEW_SYSTEM_TOPIC_NAME).')
param newSystemTopicName string

@description('Tags.')
param tags object

var roleIds = {
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultReader: '21090545-7ca7-4776-b22c-e363652d74d2'
}
var allCertificates = trim(certificateNames) == '*'
// Key Vault object names are [0-9a-zA-Z-], so dropping spaces cannot change a name.
var certificateList = allCertificates ? [] : split(replace(certificateNames, ' ', ''), ',')
var perObject = scopeToObjects && !allCertificates
// Trust bundles are plain secrets: the app reads exactly these. With a vault-scoped Secrets User
// (CERTIFICATE_NAMES = *, or object scoping off) they are already readable, so nothing more.
var bundleList = empty(trim(trustBundles)) ? [] : split(replace(trustBundles, ' ', ''), ',')
var createSystemTopic = empty(existingSystemTopicName)

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// Vault scope: CERTIFICATE_NAMES = *, or object scoping turned off.
resource vaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!perObject) {
  name: guid(vault.id, principalId, roleIds.keyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultSecretsUser)
    description: 'APIM Trust Sync: read the CA chain, stored only in each certificate backing secret.'
  }
}

resource vaultReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!perObject) {
  name: guid(vault.id, principalId, roleIds.keyVaultReader)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultReader)
    description: 'APIM Trust Sync: list certificates and their versions (metadata only, no values).'
  }
}

// Object scope: one backing secret and one certificate per watched name.
resource certificateSecrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = [for name in certificateList: {
  parent: vault
  name: name
}]

resource certificates 'Microsoft.KeyVault/vaults/certificates@2023-07-01' existing = [for name in certificateList: {
  parent: vault
  name: name
}]

resource secretSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (name, i) in certificateList: if (perObject) {
  name: guid(certificateSecrets[i].id, principalId, roleIds.keyVaultSecretsUser)
  scope: certificateSecrets[i]
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultSecretsUser)
    description: 'APIM Trust Sync: read the CA chain of this certificate from its backing secret.'
  }
}]

resource certificateReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (name, i) in certificateList: if (perObject) {
  name: guid(certificates[i].id, principalId, roleIds.keyVaultReader)
  scope: certificates[i]
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultReader)
    description: 'APIM Trust Sync: list the versions of this certificate (metadata only).'
  }
}]

// Object scope: one role on each trust bundle secret, none on any other plain secret.
resource bundleSecrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = [for name in bundleList: {
  parent: vault
  name: name
}]

resource bundleSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (name, i) in bundleList: if (perObject) {
  name: guid(bundleSecrets[i].id, principalId, roleIds.keyVaultSecretsUser)
  scope: bundleSecrets[i]
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultSecretsUser)
    description: 'APIM Trust Sync: read this trust bundle (CA certificates placed on the gateways).'
  }
}]

// A vault can have only one system topic; the postprovision hook finds it and passes its name when
// it exists (another deployment of this app on the same vault, or any other owner), and this
// deployment then only references it: it is not in this deployment's resources, so the predown
// hook never deletes it. Its system-assigned identity writes dead letters (deadletter.bicep), so
// the dead-letter container needs no key or SAS.
resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (createSystemTopic) {
  name: newSystemTopicName
  location: keyVaultLocation
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: vault.id
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

resource existingSystemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = if (!createSystemTopic) {
  name: existingSystemTopicName
  scope: resourceGroup(empty(existingSystemTopicResourceGroup) ? resourceGroup().name : existingSystemTopicResourceGroup)
}

output systemTopicName string = createSystemTopic ? systemTopic.name : existingSystemTopic.name
output systemTopicId string = createSystemTopic ? systemTopic.id : existingSystemTopic.id
output systemTopicPrincipalId string = createSystemTopic ? systemTopic!.identity.principalId : existingSystemTopic!.identity.principalId
