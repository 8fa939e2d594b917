"""The emulator's own certificate authority and its 127.0.0.1 / localhost server certificate."""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile

import trustme


class TlsMaterial:
    """A fresh CA per emulator; clients trust it through ``ca_bundle_path`` (e.g. REQUESTS_CA_BUNDLE)."""

    def __init__(self) -> None:
        self._ca = trustme.CA(organization_name="APIM Trust Sync local emulator")
        self._server_cert = self._ca.issue_cert("127.0.0.1", "localhost")
        fd, self.ca_bundle_path = tempfile.mkstemp(prefix="apim-trust-sync-emulator-ca-", suffix=".pem")
        with os.fdopen(fd, "wb") as bundle:
            bundle.write(self._ca.cert_pem.bytes())

    @property
    def ca_pem(self) -> bytes:
        return self._ca.cert_pem.bytes()

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # what Azure front ends accept
        self._server_cert.configure_cert(context)
        return context

    def remove_bundle(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.ca_bundle_path)
