"""Key Vault's side of a run: the desired state, gathered as the dependency graph it is.

    names (CERTIFICATE_NAMES, or the vault's pages) → each certificate's versions → the secrets of
    the versions to trust → their paths (TRUST_BUNDLES read alongside: a path may end in a bundle)

A read returns its value with its `Notes` (problems, warnings); nothing here writes a report.
A version's secret is read once: a run keeps what it read for the last look before removals, and a
worker keeps the public certificates of the versions it has read (`KnownVersions`; Key Vault
versions never change), so a warm worker's audit reads only the secrets of versions it has not seen.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from .backing_secret import read_secret
from .bundles import Bundle, bundle_certificates, path_with_bundles, read_bundle
from .chain import Certificate, ChainError
from .desired import Desired, VersionPath, desired_state, versions_to_trust
from .executor import Executor
from .ports import AzureCallError, NotFoundError, VaultPort, VersionInfo
from .problems import NO_NOTES, Notes, gathered
from .scope import Scope
from .settings import Settings

# What a 403 from Key Vault means: a role the app's identity lacks (infra/access/keyvault.bicep).
_ROLE_TO_LIST = (
    "the app's identity lacks the Key Vault Reader role on the vault, which lists its certificates "
    "(CERTIFICATE_NAMES=*); nothing is taken away until that is fixed"
)
_ROLE_TO_READ_CHAIN = (
    "the app's identity lacks the Key Vault Secrets User role on secret {name} (or on the vault), which reads "
    "a certificate's chain"
)
_VERSION_DISABLED = "Forbidden/SecretDisabled"  # a version disabled since it was listed: not a role


class KnownVersions:
    """The public certificates read from each certificate version's secret, kept across the runs of a
    worker: Key Vault versions are immutable, so a version read once is never read again while kept.

    Public certificates only (what `read_secret` returns: never the secret value or a key); bounded,
    the least recently used version going first. Keyed by the vault's URL, the name and the version.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._kept: OrderedDict[tuple[str, str, str], tuple[Certificate, ...]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, vault: str, name: str, version: str) -> tuple[Certificate, ...] | None:
        key = (vault.lower(), name.lower(), version.lower())
        certificates = self._kept.get(key)
        if certificates is not None:
            self._kept.move_to_end(key)
        return certificates

    def keep(self, vault: str, name: str, version: str, certificates: tuple[Certificate, ...]) -> None:
        key = (vault.lower(), name.lower(), version.lower())
        self._kept[key] = certificates
        self._kept.move_to_end(key)
        while len(self._kept) > self.capacity:
            self._kept.popitem(last=False)

    def clear(self) -> None:
        self._kept.clear()


@dataclass(frozen=True)
class CertificateRead:
    """One bound certificate as read: the paths of its versions to trust (None: not all readable)."""

    name: str
    paths: tuple[VersionPath, ...] | None
    notes: Notes = NO_NOTES
    exists: bool = True


@dataclass(frozen=True)
class BundlesRead:
    """The TRUST_BUNDLES secrets as read: the bundles that could be used, and whether all could."""

    found: Mapping[str, Bundle]
    complete: bool
    notes: Notes = NO_NOTES


@dataclass(frozen=True)
class DesiredRead:
    """Key Vault as the run read it. `missing`: certificates a scoped run named that Key Vault does
    not hold; the run then writes nothing."""

    desired: Desired
    notes: Notes
    missing: tuple[str, ...] = ()


class KeyVaultReads:
    """The Key Vault reads of one run; `desired()` may run twice (the last look reuses what it read)."""

    def __init__(
        self,
        settings: Settings,
        vault: VaultPort,
        executor: Executor,
        known: KnownVersions,
        scope: Scope,
        now: datetime,
    ) -> None:
        self.settings = settings
        self.vault = vault
        self.executor = executor
        self.known = known
        self.scope = scope
        self.now = now
        self.read_paths: dict[tuple[str, str], VersionPath] = {}  # (name, version) → its path, as this run read it

    async def desired(self) -> DesiredRead:
        """The paths of every version to trust of every certificate in scope; incomplete when one failed."""
        listed, notes = True, Notes()
        async with asyncio.TaskGroup() as reads:
            # Path building waits for the bundles: a secret without its root may find it there.
            bundles = reads.create_task(self.bundles())
            started: list[asyncio.Task[CertificateRead]] = []
            try:
                async for page in self.certificate_names():
                    started.extend(reads.create_task(self.certificate(name, bundles)) for name in page)
            except AzureCallError as error:
                if error.status != 403:
                    raise  # a read every write waits on: the run ends (Engine.run reports it)
                # Not every certificate is known: nothing may be taken away, and a retry will not help.
                notes = Notes.problem(f"{error}: {_ROLE_TO_LIST}", retryable=False)
                listed = False
        read = [task.result() for task in started]
        read_bundles = bundles.result()
        notes = gathered((notes, read_bundles.notes, *(certificate.notes for certificate in read)))
        desired = desired_state(
            {certificate.name: certificate.paths or () for certificate in read},
            trust_intermediates=self.settings.trust_intermediates,
            # A bundle that could not be used blocks removals as an unreadable certificate does.
            complete=listed and read_bundles.complete and all(certificate.paths is not None for certificate in read),
            bundles={name: bundle.authorities for name, bundle in read_bundles.found.items()},
        )
        missing = sorted(certificate.name for certificate in read if not certificate.exists)
        if missing and not self.scope.is_full:
            listed_names = ", ".join(missing)
            what = f"certificate {listed_names} does" if len(missing) == 1 else f"certificates {listed_names} do"
            problem = Notes.problem(f"{what} not exist in {self.settings.keyvault_url}", retryable=False)
            return DesiredRead(desired, problem, tuple(missing))
        return DesiredRead(desired, notes)

    async def bundles(self) -> BundlesRead:
        """Every TRUST_BUNDLES secret's valid CAs; incomplete when one is missing, unreadable or refused."""
        names = sorted(self.settings.trust_bundles)
        if not names:
            return BundlesRead({}, complete=True)
        self.executor.planned_reads(len(names))
        read = await asyncio.gather(*(self.bundle(name) for name in names))
        found = {bundle.name: bundle for bundle, _ in read if bundle is not None}
        return BundlesRead(found, complete=len(found) == len(names), notes=gathered(notes for _, notes in read))

    async def bundle(self, name: str) -> tuple[Bundle | None, Notes]:
        """One bundle; None (and a problem) when it cannot be used. Each is a configuration error, as
        for a named certificate: a retry will not help, and nothing is taken away until it is fixed."""
        vault = self.settings.keyvault_url
        blocks = "nothing of it is trusted and nothing is taken away until then"
        try:
            secret = await self.executor.read(self.vault.bundle, name)
        except NotFoundError:
            return None, Notes.problem(
                f"TRUST_BUNDLES names secret {name}, which {vault} does not hold (missing or deleted): correct the "
                f"setting or restore the secret; {blocks}",
                retryable=False,
            )
        except AzureCallError as error:
            if error.status != 403:
                return None, Notes.problem(str(error), retryable=True)
            if error.code == _VERSION_DISABLED:
                why = f"{error}: the current version of trust bundle {name} is disabled; {blocks}"
                return None, Notes.problem(why, retryable=False)
            return None, Notes.problem(
                f"{error}: the app's identity lacks the Key Vault Secrets User role on secret {name}, which "
                f"TRUST_BUNDLES names; {blocks}",
                retryable=False,
            )
        try:
            bundle = read_bundle(name, secret.value, at=self.now)
        except ChainError as error:
            return None, Notes.problem(f"{error}; {blocks}", retryable=False)
        return bundle, Notes.warning(*bundle.notes)

    async def certificate_names(self) -> AsyncIterator[list[str]]:
        named = self.scope.certificates if self.scope.certificates is not None else self.settings.certificates.names
        if named is not None:
            self.executor.planned_reads(len(named))
            yield sorted(named)
            return
        pages = self.vault.certificate_names()
        # Each page's reads start while the next page is fetched: C certificates are C/25 pages.
        while (page := await self.executor.next_page(pages)) is not None:
            self.executor.planned_reads(len(page))
            yield page

    async def certificate(self, name: str, bundles: asyncio.Task[BundlesRead]) -> CertificateRead:
        try:
            versions = await self.executor.read(self.vault.versions, name)
        except NotFoundError:
            if not self.scope.is_full:
                return CertificateRead(name, (), exists=False)  # a scoped run writes nothing then
            return await self.confirm_deleted(name)
        except AzureCallError as error:
            return CertificateRead(name, None, self.versions_failed(name, error))
        chosen = versions_to_trust(versions, self.now, self.settings.rotation_grace)
        if not chosen:
            # Retired on purpose: it needs nothing, so what only it needed may go in a full run.
            if any(version.enabled for version in versions):
                why = f"certificate {name} has only expired versions: retired, nothing of it is trusted"
            else:
                why = f"certificate {name} has no enabled version: nothing of it is trusted"
            return CertificateRead(name, (), Notes.warning(why))
        self.executor.planned_reads(sum(not self.has_read(name, v.version) for v in chosen))
        read = await asyncio.gather(*(self.path(name, version, bundles) for version in chosen))
        found = tuple(path for path, _ in read if path is not None)
        notes = gathered(notes for _, notes in read)
        return CertificateRead(name, found if len(found) == len(read) else None, notes)

    async def confirm_deleted(self, name: str) -> CertificateRead:
        """A full run met a 404 on a certificate's versions: retired only on Key Vault's word that it was
        deleted, since a name that never existed (a typo in CERTIFICATE_NAMES) answers the same 404, and
        taking its chains away would break every backend that uses them."""
        vault = self.settings.keyvault_url
        self.executor.planned_reads()
        try:
            deleted = await self.executor.read(self.vault.deleted, name)
            if deleted is None:
                # The identity may not read deleted certificates (roles on named certificates only),
                # where a misspelt name answers 403, not 404: a second 404 is taken as the deletion.
                self.executor.planned_reads()
                deleted = not await self.exists(name)
                if not deleted:  # recreated or recovered between the two looks: the next run reads it
                    why = f"certificate {name} was not found in {vault}, then found"
                    return CertificateRead(name, None, Notes.problem(why, retryable=True))
        except AzureCallError as error:
            return CertificateRead(name, None, self.versions_failed(name, error))
        named = self.settings.certificates.names is not None
        if deleted:
            fix = "; remove it from CERTIFICATE_NAMES" if named else ""
            why = f"certificate {name} was deleted from {vault}: retired, nothing of it is trusted{fix}"
            return CertificateRead(name, (), Notes.warning(why))
        if named:
            problem = Notes.problem(
                f"CERTIFICATE_NAMES names certificate {name}, which {vault} does not hold, not even as deleted: "
                "correct the setting; nothing is taken away until then",
                retryable=False,
            )
        else:  # listed by the vault a moment ago, gone now without a trace (purged): the next list settles it
            problem = Notes.problem(
                f"certificate {name} was listed by {vault}, then not found, not even as deleted: nothing is taken away",
                retryable=True,
            )
        return CertificateRead(name, None, problem)

    async def exists(self, name: str) -> bool:
        try:
            await self.executor.read(self.vault.versions, name)
        except NotFoundError:
            return False
        return True

    def versions_failed(self, name: str, error: AzureCallError) -> Notes:
        """A read of a certificate's versions failed: a 403 is a role to grant or a name to correct (a
        retry will not help: the run is failed, not retryable), anything else may pass."""
        if error.status != 403:
            return Notes.problem(str(error), retryable=True)
        named = name in self.settings.certificates and not self.settings.certificates.is_all
        fix = f"; if {name} is misspelt, correct CERTIFICATE_NAMES" if named else ""
        return Notes.problem(
            f"{error}: the app's identity lacks the Key Vault Reader role on certificate {name} (or on the vault), "
            f"which lists its versions; nothing is taken away until that is fixed{fix}",
            retryable=False,
        )

    def has_read(self, name: str, version: str) -> bool:
        """Whether this run or the worker has read the version's secret already."""
        known = (name.lower(), version.lower()) in self.read_paths
        return known or self.known.get(self.settings.keyvault_url, name, version) is not None

    async def path(
        self, name: str, version: VersionInfo, bundles: asyncio.Task[BundlesRead]
    ) -> tuple[VersionPath | None, Notes]:
        """A version's path; its secret read only when neither this run nor the worker has read it."""
        if (read := self.read_paths.get((name.lower(), version.version.lower()))) is not None:
            return VersionPath(version, read.path, read.secret_certificates), NO_NOTES  # the last look: as listed now
        vault = self.settings.keyvault_url
        known = self.known.get(vault, name, version.version)
        try:
            certificates, notes = (
                (known, NO_NOTES) if known is not None else await self.secret_certificates(name, version)
            )
            if certificates is None:
                return None, notes
            pool = bundle_certificates((await bundles).found)
            path = path_with_bundles(certificates, leaf_thumbprint=version.leaf_thumbprint, at=self.now, bundles=pool)
        except ChainError as error:
            # Bad input: retrying will not fix it. The other versions are still trusted.
            return None, Notes.problem(f"certificate {name} version {version.version}: {error}", retryable=False)
        self.known.keep(vault, name, version.version, certificates)
        read = self.read_paths[name.lower(), version.version.lower()] = VersionPath(version, path, certificates)
        return read, NO_NOTES

    async def secret_certificates(
        self, name: str, version: VersionInfo
    ) -> tuple[tuple[Certificate, ...] | None, Notes]:
        """The certificates of a version's secret (the secret itself goes no further); None (and a
        problem) when it cannot be read; `ChainError` when it holds no certificates."""
        try:
            secret = await self.executor.read(self.vault.secret, name, version.version)
        except AzureCallError as error:
            if error.status == 403 and error.code != _VERSION_DISABLED:
                return None, Notes.problem(f"{error}: {_ROLE_TO_READ_CHAIN.format(name=name)}", retryable=False)
            # Key Vault has just listed this version, so even a 404 is a passing inconsistency (or a
            # deletion since), not bad input: a retry re-lists and settles it either way.
            return None, Notes.problem(str(error), retryable=True)
        return read_secret(secret.value, secret.content_type), NO_NOTES
