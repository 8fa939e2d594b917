"""The emulated vault's contents: certificate versions with their backing secrets, and plain secrets.

A certificate version is stored once; its secret (same name and version) is rendered from it at
import: a PFX with an empty password (``application/x-pkcs12``) or PEM with the unencrypted PKCS#8
key first (``application/x-pem-file``), holding the key and the whole chain as imported. Object
names are case-insensitive, as in Key Vault. "Latest" is the most recently created version.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from . import certs
from .certs import PEM, PKCS12, CertificateFormatError, CertificateMaterial
from .eventgrid import CERTIFICATE_NEW_VERSION_CREATED, SECRET_NEW_VERSION_CREATED, Event, keyvault_event

NAME_PATTERN = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_log = logging.getLogger("emulator")

EventCallback = Callable[[Event], object]
_V = TypeVar("_V", "CertificateVersion", "SecretVersion")


@dataclass(frozen=True)
class CertificateVersion:
    name: str
    version: str
    content_type: str
    material: CertificateMaterial
    secret_value: str  # what GET /secrets/{name}/{version} answers as "value"
    enabled: bool
    created: int  # epoch seconds
    updated: int
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def nbf(self) -> int:
        return certs.epoch(certs.not_before(self.material.leaf))

    @property
    def exp(self) -> int:
        return certs.epoch(certs.not_after(self.material.leaf))

    @property
    def x5t(self) -> str:
        return certs.x5t(self.material.leaf)

    @property
    def cer(self) -> str:
        """Standard base64 of the leaf's DER: only the leaf, never the chain."""
        return base64.b64encode(certs.der(self.material.leaf)).decode()


@dataclass(frozen=True)
class SecretVersion:
    """A plain secret (set directly, not backing a certificate)."""

    name: str
    version: str
    value: str
    content_type: str | None
    enabled: bool
    created: int
    updated: int
    tags: Mapping[str, str] = field(default_factory=dict)


RETENTION_DAYS = 90  # soft-delete retention, Key Vault's default (recoverableDays)


class DeletedButRecoverable(ValueError):
    """A certificate of this name is deleted and not purged: Key Vault will not reuse the name (409)."""


@dataclass(frozen=True)
class DeletedCertificate:
    """A soft-deleted certificate: its latest version and policy, kept until the purge date."""

    name: str
    latest: CertificateVersion
    policy: Mapping[str, Any]
    deleted: int  # epoch seconds
    scheduled_purge: int


@dataclass
class _Certificate:
    name: str  # as first created
    versions: list[CertificateVersion]
    policy: dict[str, Any]


@dataclass
class _Secret:
    name: str
    versions: list[SecretVersion]


class Vault:
    """Thread-safe; the Python API tests use to arrange and inspect the vault."""

    def __init__(self, *, name: str, topic: str) -> None:
        self.name = name
        self.topic = topic  # the vault's ARM id, the Event Grid topic
        self.url = ""  # set once the emulator's port is known
        self.delivery_errors: list[BaseException] = []
        self._lock = threading.RLock()
        self._certificates: dict[str, _Certificate] = {}
        self._deleted: dict[str, DeletedCertificate] = {}
        self.allowed_certificates: frozenset[str] | None = None  # see allow_only
        self._secrets: dict[str, _Secret] = {}
        self._deleted_secrets: dict[str, _Secret] = {}
        self._subscribers: list[EventCallback] = []

    # -- arranging -------------------------------------------------------------------------------

    def import_certificate(
        self,
        name: str,
        data: bytes | str,
        content_type: str = PKCS12,
        *,
        password: str | None = None,
        enabled: bool = True,
        created: datetime | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Stores a new version and returns its id. PKCS12 data: PFX bytes or their base64; PEM: text or bytes."""
        if content_type == PKCS12:
            pfx = base64.b64decode(data, validate=True) if isinstance(data, str) else data
            material = certs.load_pkcs12(pfx, password)
        elif content_type == PEM:
            material = certs.load_pem(data.encode() if isinstance(data, str) else data)
        else:
            raise ValueError(f"content_type must be {PKCS12} or {PEM}, not {content_type!r}")
        when = certs.epoch(created) if created is not None else None
        return self.add_certificate_version(
            name, material, content_type, enabled=enabled, created=when, tags=tags
        ).version

    def add_certificate_version(
        self,
        name: str,
        material: CertificateMaterial,
        content_type: str,
        *,
        enabled: bool = True,
        created: int | None = None,
        tags: Mapping[str, str] | None = None,
        policy: Mapping[str, Any] | None = None,
    ) -> CertificateVersion:
        _check_name(name)
        if material.key is None:
            raise CertificateFormatError("Key Vault imports certificates with their private key only")
        now = int(time.time())
        version_id = uuid.uuid4().hex
        secret_value = (
            base64.b64encode(certs.to_pkcs12(material)).decode() if content_type == PKCS12 else certs.to_pem(material)
        )
        version = CertificateVersion(
            name=name,
            version=version_id,
            content_type=content_type,
            material=material,
            secret_value=secret_value,
            enabled=enabled,
            created=created if created is not None else now,
            # Key Vault sets both at creation; a version arranged in the past was last changed then.
            updated=created if created is not None else now,
            tags=dict(tags or {}),
        )
        with self._lock:
            if name.lower() in self._deleted:
                raise DeletedButRecoverable(
                    f"Certificate {name} is currently in a deleted but recoverable state, and its name cannot be "
                    "reused; in this state, the certificate can only be recovered or purged."
                )
            if name.lower() in self._secrets:
                raise ValueError(f"{name!r} is a plain secret; a certificate cannot share its name")
            certificate = self._certificates.get(name.lower())
            if certificate is None:
                certificate = self._certificates[name.lower()] = _Certificate(name, [], {})
            certificate.versions.append(dataclasses.replace(version, name=certificate.name))
            certificate.policy = _policy(certificate.name, version, now, policy)
            stored = certificate.versions[-1]
        self._notify(self.certificate_event(stored.name, stored.version))
        return stored

    def set_enabled(self, name: str, version: str, enabled: bool, *, at: datetime | None = None) -> None:
        """Enables or disables a version; its ``updated`` becomes now (or ``at``, for arranged history)."""
        when = certs.epoch(at) if at is not None else int(time.time())
        with self._lock:
            if (certificate := self._certificates.get(name.lower())) is not None:
                versions: list[Any] = certificate.versions
            elif (secret := self._secrets.get(name.lower())) is not None:
                versions = secret.versions
            else:
                raise KeyError(name)
            for index, stored in enumerate(versions):
                if stored.version == version:
                    versions[index] = dataclasses.replace(stored, enabled=enabled, updated=when)
                    return
            raise KeyError(f"{name}/{version}")

    def replace_secret_value(self, name: str, version: str, value: str, content_type: str | None = None) -> None:
        """Serves ``value`` (and ``content_type``, if given) as the backing secret of a certificate version.

        Real Key Vault keeps a certificate's secret consistent with it; tests use this to make the
        product read what it must refuse (garbage base64, a password-protected PFX, a PEM without
        certificates, a text/plain secret) through the real SDK, while the version list still shows
        a normal certificate version.
        """
        with self._lock:
            certificate = self._certificates.get(name.lower())
            if certificate is None:
                raise KeyError(name)
            for index, stored in enumerate(certificate.versions):
                if stored.version == version:
                    certificate.versions[index] = dataclasses.replace(
                        stored,
                        secret_value=value,
                        content_type=stored.content_type if content_type is None else content_type,
                    )
                    return
            raise KeyError(f"{name}/{version}")

    def set_secret(
        self,
        name: str,
        value: str,
        content_type: str | None = None,
        *,
        enabled: bool = True,
        created: datetime | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Stores a new version of a plain secret (not a certificate) and returns its id."""
        _check_name(name)
        now = int(time.time())
        with self._lock:
            if name.lower() in self._certificates:
                raise ValueError(f"{name!r} backs a certificate; Key Vault manages that secret itself")
            secret = self._secrets.setdefault(name.lower(), _Secret(name, []))
            stored = SecretVersion(
                name=secret.name,
                version=uuid.uuid4().hex,
                value=value,
                content_type=content_type,
                enabled=enabled,
                created=certs.epoch(created) if created is not None else now,
                updated=now,
                tags=dict(tags or {}),
            )
            secret.versions.append(stored)
        self._notify(
            keyvault_event(
                event_type=SECRET_NEW_VERSION_CREATED,
                topic=self.topic,
                vault_name=self.name,
                object_id=f"{self.url}/secrets/{stored.name}/{stored.version}",
                object_type="Secret",
                name=stored.name,
                version=stored.version,
                nbf=None,
                exp=None,
            )
        )
        return stored.version

    def clear(self) -> None:
        """Forgets every certificate and secret, deleted ones too, and any access restriction
        (subscribers stay): a fresh vault for the next test."""
        with self._lock:
            self._certificates.clear()
            self._deleted.clear()
            self._secrets.clear()
            self._deleted_secrets.clear()
            self.delivery_errors.clear()
            self.allowed_certificates = None

    def delete_certificate(self, name: str, *, at: datetime | None = None) -> None:
        """Deletes the certificate, its versions and backing secret, softly as every vault does now:
        it leaves the list and is found among the deleted certificates until purged."""
        when = certs.epoch(at) if at is not None else int(time.time())
        with self._lock:
            certificate = self._certificates.pop(name.lower())
            self._deleted[name.lower()] = DeletedCertificate(
                certificate.name,
                certificate.versions[-1],
                dict(certificate.policy),
                deleted=when,
                scheduled_purge=when + RETENTION_DAYS * 86400,
            )

    def delete_secret(self, name: str) -> None:
        """Deletes a plain secret softly: its GETs answer 404 (SecretNotFound) from then on, as Key Vault's
        do for a deleted secret, while the vault keeps it (recoverable) until purged."""
        with self._lock:
            if name.lower() in self._certificates:
                raise ValueError(f"{name!r} backs a certificate: delete the certificate")
            self._deleted_secrets[name.lower()] = self._secrets.pop(name.lower())

    def purge_deleted_certificate(self, name: str) -> None:
        """Forgets a deleted certificate for good: Key Vault then holds no trace of the name."""
        with self._lock:
            del self._deleted[name.lower()]

    def allow_only(self, names: Iterable[str] | None) -> None:
        """Grants the app's identity roles on these certificates (and their secrets) only, as the
        deployment does with named certificates; None: roles on the whole vault (the default).
        Anything else it asks for answers 403, the vault's lists and deleted certificates too."""
        with self._lock:
            self.allowed_certificates = None if names is None else frozenset(name.lower() for name in names)

    def may_access(self, name: str | None) -> bool:
        """Whether the identity holds a role on the certificate or secret `name` (None: the vault)."""
        allowed = self.allowed_certificates
        return allowed is None or (name is not None and name.lower() in allowed)

    # -- inspecting ------------------------------------------------------------------------------

    def certificate_names(self) -> list[str]:
        with self._lock:
            return sorted((c.name for c in self._certificates.values()), key=str.lower)

    def versions(self, name: str) -> list[str]:
        """Version ids of a certificate or plain secret, oldest first."""
        with self._lock:
            if (certificate := self._certificates.get(name.lower())) is not None:
                return [v.version for v in certificate.versions]
            if (secret := self._secrets.get(name.lower())) is not None:
                return [v.version for v in secret.versions]
        raise KeyError(name)

    def certificate(self, name: str, version: str | None = None) -> CertificateVersion:
        """A version (the latest when None); KeyError when there is none."""
        with self._lock:
            certificate = self._certificates.get(name.lower())
            if certificate is None:
                raise KeyError(name)
            return _pick(certificate.versions, name, version)

    def deleted_certificate(self, name: str) -> DeletedCertificate:
        """A deleted certificate; KeyError when the vault holds none of that name."""
        with self._lock:
            return self._deleted[name.lower()]

    def certificate_versions(self, name: str) -> list[CertificateVersion]:
        with self._lock:
            certificate = self._certificates.get(name.lower())
            if certificate is None:
                raise KeyError(name)
            return list(certificate.versions)

    def latest_certificates(self) -> list[CertificateVersion]:
        with self._lock:
            return [self._certificates[n.lower()].versions[-1] for n in self.certificate_names()]

    def policy(self, name: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._certificates[name.lower()].policy)

    def secret(self, name: str, version: str | None = None) -> CertificateVersion | SecretVersion:
        """The secret's version: a CertificateVersion when it backs a certificate."""
        with self._lock:
            if name.lower() in self._certificates:
                return self.certificate(name, version)
            secret = self._secrets.get(name.lower())
            if secret is None:
                raise KeyError(name)
            return _pick(secret.versions, name, version)

    def secret_versions(self, name: str) -> list[CertificateVersion] | list[SecretVersion]:
        with self._lock:
            if name.lower() in self._certificates:
                return self.certificate_versions(name)
            secret = self._secrets.get(name.lower())
            if secret is None:
                raise KeyError(name)
            return list(secret.versions)

    # -- events ----------------------------------------------------------------------------------

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Calls ``callback(event)`` (Event Grid schema) for each new version; returns an unsubscribe function.

        Delivery is synchronous, in the thread that created the version, after the vault is updated.
        A callback's exception is logged and kept in ``delivery_errors``, never raised to the writer.
        """
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def certificate_event(
        self, name: str, version: str | None = None, event_type: str = CERTIFICATE_NEW_VERSION_CREATED
    ) -> Event:
        """The event Key Vault would publish for this version (e.g. CertificateNearExpiry for tests)."""
        stored = self.certificate(name, version)
        return keyvault_event(
            event_type=event_type,
            topic=self.topic,
            vault_name=self.name,
            object_id=f"{self.url}/certificates/{stored.name}/{stored.version}",
            object_type="Certificate",
            name=stored.name,
            version=stored.version,
            nbf=stored.nbf,
            exp=stored.exp,
        )

    def _notify(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception as error:
                _log.exception("event subscriber failed")
                self.delivery_errors.append(error)


def _check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise ValueError(f"Key Vault object names are 1-127 letters, digits and dashes, not {name!r}")


def _pick(versions: list[_V], name: str, version: str | None) -> _V:
    if not version:
        return versions[-1]
    for stored in versions:
        if stored.version == version:
            return stored
    raise KeyError(f"{name}/{version}")


_KEY_USAGE_NAMES = (
    ("digital_signature", "digitalSignature"),
    ("content_commitment", "nonRepudiation"),
    ("key_encipherment", "keyEncipherment"),
    ("data_encipherment", "dataEncipherment"),
    ("key_agreement", "keyAgreement"),
    ("key_cert_sign", "keyCertSign"),
    ("crl_sign", "cRLSign"),
)


def _policy(name: str, version: CertificateVersion, now: int, requested: Mapping[str, Any] | None) -> dict[str, Any]:
    """The certificate policy Key Vault derives from an imported certificate."""
    leaf = version.material.leaf
    key = version.material.key
    key_props: dict[str, Any] = {"exportable": True, "kty": "RSA", "reuse_key": False}
    if isinstance(key, rsa.RSAPrivateKey):
        key_props["key_size"] = key.key_size
    elif key is not None:
        key_props.update(
            kty="EC",
            crv={"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(key.curve.name, key.curve.name),
        )
    x509_props: dict[str, Any] = {
        "subject": certs.subject_string(leaf.subject),
        "ekus": [],
        "key_usage": [],
        "validity_months": max(1, round((version.exp - version.nbf) / (30.4375 * 86400))),
    }
    with contextlib.suppress(x509.ExtensionNotFound):
        x509_props["ekus"] = [
            oid.dotted_string for oid in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        ]
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        x509_props["key_usage"] = [wire for attr, wire in _KEY_USAGE_NAMES if getattr(usage, attr)]
    except x509.ExtensionNotFound:
        pass
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = sans.get_values_for_type(x509.DNSName)
        if dns_names:
            x509_props["sans"] = {"dns_names": dns_names}
    except x509.ExtensionNotFound:
        pass
    requested_issuer = (requested or {}).get("issuer")
    return {
        "key_props": key_props,
        "secret_props": {"contentType": version.content_type},
        "x509_props": x509_props,
        "lifetime_actions": [{"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "EmailContacts"}}],
        "issuer": requested_issuer if isinstance(requested_issuer, dict) else {"name": "Unknown"},
        "attributes": {"enabled": True, "created": now, "updated": now},
    }
