// A private endpoint in the app resource group, for a resource that may live elsewhere (the
// existing Key Vault), with its DNS record in the given private DNS zone. Deleting the app resource
// group (azd down) deletes the endpoint and, with it, its connection on the target.

@description('Private endpoint name.')
param name string

@description('Region (of the virtual network).')
param location string

@description('Tags.')
param tags object

@description('Subnet of the private endpoint.')
param subnetId string

@description('Resource id of the target (storage account, Key Vault).')
param targetId string

@allowed([
  'blob'
  'queue'
  'table'
  'vault'
  'sites'
])
@description('Sub-resource of the target: blob, queue or table (storage), vault (Key Vault) or sites (the Function App).')
param groupId string

@description('Private DNS zone that gets the endpoint\'s A record.')
param privateDnsZoneId string

@description('true = request the connection for approval by the target\'s owner; false = approve it with the deploying identity (needs privateEndpointConnectionsApproval on the target).')
param manualApproval bool

var connection = [
  {
    name: name
    properties: {
      privateLinkServiceId: targetId
      groupIds: [
        groupId
      ]
      requestMessage: manualApproval ? 'APIM Trust Sync: private access for the app that reads certificate chains.' : null
    }
  }
]

resource endpoint 'Microsoft.Network/privateEndpoints@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetId
    }
    customNetworkInterfaceName: 'nic-${name}'
    privateLinkServiceConnections: manualApproval ? [] : connection
    manualPrivateLinkServiceConnections: manualApproval ? connection : []
  }
}

resource dnsZoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2023-11-01' = {
  parent: endpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: groupId
        properties: {
          privateDnsZoneId: privateDnsZoneId
        }
      }
    ]
  }
}

output id string = endpoint.id
