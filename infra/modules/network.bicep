// Private network mode: a virtual network for the app and its private endpoints, and the private
// DNS zones that make the storage account and the Key Vault resolve to those endpoints.
//   - app subnet: delegated to the plan (Flex Consumption: Microsoft.App/environments; Dedicated:
//     Microsoft.Web/serverFarms); the app's outbound calls to private addresses go through it;
//   - private endpoint subnet: the host storage (blob, table), event queue (queue of the dead-letter
//     account), Key Vault and Function App (sites: the app's only inbound path) private endpoints;
//   - private DNS zones: new ones here, linked to the virtual network, or existing ones (e.g. in a
//     hub) whose ids are passed in; the zone names follow the cloud (privatelink.blob.core.windows.net
//     and privatelink.vaultcore.azure.net in the public cloud, .core.chinacloudapi.cn and
//     .vaultcore.azure.cn in Azure China; privatelink.azurewebsites.net for the app, and its
//     counterpart in each cloud).

@description('Virtual network name.')
param vnetName string

@description('Region.')
param location string

@description('Tags.')
param tags object

@description('Address space of the virtual network.')
param addressPrefix string

@description('App (VNet integration) subnet.')
param appSubnetPrefix string

@description('Private endpoint subnet.')
param privateEndpointSubnetPrefix string

@allowed([
  'Microsoft.App/environments'
  'Microsoft.Web/serverFarms'
])
@description('Delegation of the app subnet: Microsoft.App/environments for Flex Consumption, Microsoft.Web/serverFarms for a Dedicated plan.')
param appSubnetDelegation string

@description('DNS servers of the virtual network; empty = Azure DNS.')
param dnsServers array

@description('Existing privatelink.blob zone id; empty = create one.')
param blobPrivateDnsZoneId string

@description('Existing privatelink.vaultcore zone id; empty = create one.')
param keyVaultPrivateDnsZoneId string

@description('Existing privatelink.queue zone id; empty = create one.')
param queuePrivateDnsZoneId string

@description('Existing privatelink.table zone id; empty = create one.')
param tablePrivateDnsZoneId string

@description('Existing privatelink zone id of App Service sites (privatelink.azurewebsites.net in the public cloud); empty = create one.')
param sitesPrivateDnsZoneId string

var blobZoneName = 'privatelink.blob.${environment().suffixes.storage}'
// keyvaultDns is .vault.azure.net, .vault.azure.cn, .vault.usgovcloudapi.net: the private link
// zone of each cloud is the same name with vaultcore.
var keyVaultZoneName = 'privatelink${replace(environment().suffixes.keyvaultDns, 'vault.', 'vaultcore.')}'
var queueZoneName = 'privatelink.queue.${environment().suffixes.storage}'
var tableZoneName = 'privatelink.table.${environment().suffixes.storage}'
// App Service private link zones: no environment() suffix names them.
var cloudName = environment().name
var sitesZoneName = (cloudName == 'AzureChinaCloud') ? 'privatelink.chinacloudsites.cn' : ((cloudName == 'AzureUSGovernment') ? 'privatelink.azurewebsites.us' : 'privatelink.azurewebsites.net')
var createBlobZone = empty(blobPrivateDnsZoneId)
var createQueueZone = empty(queuePrivateDnsZoneId)
var createTableZone = empty(tablePrivateDnsZoneId)
var createSitesZone = empty(sitesPrivateDnsZoneId)
var createKeyVaultZone = empty(keyVaultPrivateDnsZoneId)

resource appNsg 'Microsoft.Network/networkSecurityGroups@2023-11-01' = {
  name: 'nsg-app-${vnetName}'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource privateEndpointNsg 'Microsoft.Network/networkSecurityGroups@2023-11-01' = {
  name: 'nsg-pe-${vnetName}'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    dhcpOptions: {
      dnsServers: dnsServers
    }
    subnets: [
      {
        name: 'app'
        properties: {
          addressPrefix: appSubnetPrefix
          networkSecurityGroup: {
            id: appNsg.id
          }
          delegations: [
            {
              name: 'app'
              properties: {
                serviceName: appSubnetDelegation
              }
            }
          ]
        }
      }
      {
        name: 'private-endpoints'
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          networkSecurityGroup: {
            id: privateEndpointNsg.id
          }
          privateEndpointNetworkPolicies: 'Enabled'
        }
      }
    ]
  }
}

resource blobZone 'Microsoft.Network/privateDnsZones@2020-06-01' = if (createBlobZone) {
  name: blobZoneName
  location: 'global'
  tags: tags
}

resource blobZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = if (createBlobZone) {
  parent: blobZone
  name: vnetName
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

resource keyVaultZone 'Microsoft.Network/privateDnsZones@2020-06-01' = if (createKeyVaultZone) {
  name: keyVaultZoneName
  location: 'global'
  tags: tags
}

resource keyVaultZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = if (createKeyVaultZone) {
  parent: keyVaultZone
  name: vnetName
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

resource queueZone 'Microsoft.Network/privateDnsZones@2020-06-01' = if (createQueueZone) {
  name: queueZoneName
  location: 'global'
  tags: tags
}

resource queueZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = if (createQueueZone) {
  parent: queueZone
  name: vnetName
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

resource tableZone 'Microsoft.Network/privateDnsZones@2020-06-01' = if (createTableZone) {
  name: tableZoneName
  location: 'global'
  tags: tags
}

resource tableZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = if (createTableZone) {
  parent: tableZone
  name: vnetName
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

resource sitesZone 'Microsoft.Network/privateDnsZones@2020-06-01' = if (createSitesZone) {
  name: sitesZoneName
  location: 'global'
  tags: tags
}

resource sitesZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = if (createSitesZone) {
  parent: sitesZone
  name: vnetName
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

output vnetId string = vnet.id
output appSubnetId string = '${vnet.id}/subnets/app'
output privateEndpointSubnetId string = '${vnet.id}/subnets/private-endpoints'
output blobPrivateDnsZoneId string = createBlobZone ? blobZone.id : blobPrivateDnsZoneId
output keyVaultPrivateDnsZoneId string = createKeyVaultZone ? keyVaultZone.id : keyVaultPrivateDnsZoneId
output queuePrivateDnsZoneId string = createQueueZone ? queueZone.id : queuePrivateDnsZoneId
output tablePrivateDnsZoneId string = createTableZone ? tableZone.id : tablePrivateDnsZoneId
output sitesPrivateDnsZoneId string = createSitesZone ? sitesZone.id : sitesPrivateDnsZoneId
