"""One name per emulated route: the unit of request counting and fault injection."""

from __future__ import annotations

from typing import Final

IDENTITY_TOKEN: Final = "identity.token"

KV_CHALLENGE: Final = "kv.challenge"  # the bodiless first request, answered 401 + WWW-Authenticate
KV_LIST_CERTIFICATES: Final = "kv.list_certificates"
KV_LIST_CERTIFICATE_VERSIONS: Final = "kv.list_certificate_versions"
KV_GET_CERTIFICATE: Final = "kv.get_certificate"
KV_IMPORT_CERTIFICATE: Final = "kv.import_certificate"
KV_GET_SECRET: Final = "kv.get_secret"
KV_LIST_SECRET_VERSIONS: Final = "kv.list_secret_versions"
KV_GET_DELETED_CERTIFICATE: Final = "kv.get_deleted_certificate"

ARM_GET_SERVICE: Final = "arm.get_service"
ARM_UPDATE_SERVICE: Final = "arm.update_service"
ARM_LIST_BACKENDS: Final = "arm.list_backends"
ARM_GET_BACKEND: Final = "arm.get_backend"
ARM_UPDATE_BACKEND: Final = "arm.update_backend"
ARM_LIST_WORKSPACES: Final = "arm.list_workspaces"
ARM_LIST_WORKSPACE_LINKS: Final = "arm.list_workspace_links"
ARM_LIST_WORKSPACE_BACKENDS: Final = "arm.list_workspace_backends"
ARM_LIST_CERTIFICATES: Final = "arm.list_certificates"
ARM_GET_CERTIFICATE: Final = "arm.get_certificate"
ARM_HEAD_CERTIFICATE: Final = "arm.head_certificate"
ARM_PUT_CERTIFICATE: Final = "arm.put_certificate"
ARM_DELETE_CERTIFICATE: Final = "arm.delete_certificate"
ARM_LIST_GATEWAYS: Final = "arm.list_gateways"
ARM_GET_GATEWAY: Final = "arm.get_gateway"
ARM_LIST_GATEWAY_CAS: Final = "arm.list_gateway_cas"
ARM_GET_GATEWAY_CA: Final = "arm.get_gateway_ca"
ARM_HEAD_GATEWAY_CA: Final = "arm.head_gateway_ca"
ARM_PUT_GATEWAY_CA: Final = "arm.put_gateway_ca"
ARM_DELETE_GATEWAY_CA: Final = "arm.delete_gateway_ca"

# Requests that match no emulated route are still recorded, under these names.
IDENTITY_UNROUTED: Final = "identity.unrouted"
KV_UNROUTED: Final = "kv.unrouted"
ARM_UNROUTED: Final = "arm.unrouted"

OPERATIONS: Final = frozenset(
    {
        IDENTITY_TOKEN,
        KV_CHALLENGE,
        KV_LIST_CERTIFICATES,
        KV_LIST_CERTIFICATE_VERSIONS,
        KV_GET_CERTIFICATE,
        KV_IMPORT_CERTIFICATE,
        KV_GET_SECRET,
        KV_LIST_SECRET_VERSIONS,
        KV_GET_DELETED_CERTIFICATE,
        ARM_GET_SERVICE,
        ARM_UPDATE_SERVICE,
        ARM_LIST_BACKENDS,
        ARM_GET_BACKEND,
        ARM_UPDATE_BACKEND,
        ARM_LIST_WORKSPACES,
        ARM_LIST_WORKSPACE_LINKS,
        ARM_LIST_WORKSPACE_BACKENDS,
        ARM_LIST_CERTIFICATES,
        ARM_GET_CERTIFICATE,
        ARM_HEAD_CERTIFICATE,
        ARM_PUT_CERTIFICATE,
        ARM_DELETE_CERTIFICATE,
        ARM_LIST_GATEWAYS,
        ARM_GET_GATEWAY,
        ARM_LIST_GATEWAY_CAS,
        ARM_GET_GATEWAY_CA,
        ARM_HEAD_GATEWAY_CA,
        ARM_PUT_GATEWAY_CA,
        ARM_DELETE_GATEWAY_CA,
    }
)

WRITE_METHODS: Final = frozenset({"PUT", "POST", "DELETE", "PATCH"})
