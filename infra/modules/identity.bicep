// The user-assigned managed identity the app uses for every Azure call (storage, Application
// Insights, Key Vault, API Management). User-assigned rather than system-assigned by default:
// it outlives the app, so re-creating the app keeps its role assignments, and its principal id
// exists before the app does.

@description('Identity name.')
param name string

@description('Region.')
param location string

@description('Tags.')
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
