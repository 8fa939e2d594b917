"""Trust bundles, pure: reading a bundle secret, completing a path from the bundles, the desired
authorities they add, the TRUST_BUNDLES setting and the routing of secret events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from emulator.pki import Hierarchy, make_certificate, pem_secret
from shared.bundles import BundleError, parse_bundle, path_with_bundles, reached, read_bundle
from shared.chain import Certificate, ChainError, trust_path
from shared.desired import VersionPath, desired_state
from shared.events import SECRET_NEW_VERSION_CREATED, EventError, Ignore, ReconcileBundle, route
from shared.ports import VersionInfo
from shared.settings import SettingsError, load_settings

NOW = datetime.now(UTC)
APIM_ID = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg1/providers/Microsoft.ApiManagement/service/apim1"
BASE = {"KEYVAULT_URL": "https://sample-kv.vault.azure.net", "APIM_RESOURCE_ID": APIM_ID}


def pem(*certificates: x509.Certificate) -> str:
    return "".join(cert.public_bytes(serialization.Encoding.PEM).decode() for cert in certificates)


def cert(certificate: x509.Certificate) -> Certificate:
    return Certificate.from_x509(certificate)


class TestParseBundle:
    def test_every_ca_in_file_order(self) -> None:
        pki = Hierarchy(intermediates=1)
        value = "\n" + pem(*pki.ca_certificates()) + "\n\n"
        assert parse_bundle("roots", value) == tuple(cert(c) for c in pki.ca_certificates())

    @pytest.mark.parametrize(
        ("value", "said"),
        [
            ("", "holds no PEM certificate"),
            ("   \n", "holds no PEM certificate"),
            ("not pem at all", "holds text outside PEM CERTIFICATE blocks (line 1)"),
            ("-----BEGIN CERTIFICATE-----\nAAAA", "has no END CERTIFICATE line"),
            ("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "not valid base64"),
            ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "PEM certificate #1"),
            ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "holds a PUBLIC KEY block"),
        ],
    )
    def test_anything_but_pem_certificates_is_refused(self, value: str, said: str) -> None:
        with pytest.raises(BundleError, match="trust bundle secret roots") as refused:
            parse_bundle("roots", value)
        assert said in str(refused.value)

    def test_a_private_key_anywhere_refuses_the_whole_bundle_without_repeating_it(self) -> None:
        root = make_certificate("Root", is_ca=True)
        value = pem(root.certificate) + pem_secret(root.key, [])
        with pytest.raises(BundleError, match="holds a private key") as refused:
            parse_bundle("roots", value)
        key_body = value.split("PRIVATE KEY-----")[1][:40].strip()
        assert key_body not in str(refused.value)

    def test_a_certificate_that_is_not_a_ca_is_refused(self) -> None:
        root = make_certificate("Root", is_ca=True)
        leaf = make_certificate("leaf.example", issuer=root)
        with pytest.raises(BundleError, match=r"certificate #2 \(.*leaf\.example.*\) is not a CA"):
            parse_bundle("roots", pem(root.certificate, leaf.certificate))

    def test_text_between_blocks_names_its_line(self) -> None:
        root = make_certificate("Root", is_ca=True)
        value = pem(root.certificate) + "subject=CN = Root\n" + pem(root.certificate)
        line = pem(root.certificate).count("\n") + 1
        with pytest.raises(BundleError, match=rf"\(line {line}\)"):
            parse_bundle("roots", value)

    def test_a_bundle_error_is_a_chain_error(self) -> None:
        assert issubclass(BundleError, ChainError)


class TestReadBundle:
    def test_expired_and_future_cas_are_noted_not_kept_and_duplicates_dropped(self) -> None:
        expired = make_certificate(
            "Old", is_ca=True, not_before=NOW - timedelta(days=9), not_after=NOW - timedelta(days=1)
        )
        future = make_certificate("Next", is_ca=True, not_before=NOW + timedelta(hours=1))
        almost = make_certificate("Almost", is_ca=True, not_before=NOW + timedelta(minutes=2))  # within the skew
        current = make_certificate("Now", is_ca=True)
        value = pem(
            expired.certificate, future.certificate, current.certificate, current.certificate, almost.certificate
        )

        bundle = read_bundle("roots", value, at=NOW)

        assert bundle.authorities == (cert(current.certificate), cert(almost.certificate))
        assert len(bundle.notes) == 2
        assert "Old" in bundle.notes[0]
        assert "expired on" in bundle.notes[0]
        assert "Next" in bundle.notes[1]
        assert "not valid before" in bundle.notes[1]


class TestPathWithBundles:
    def test_a_secret_that_stops_below_its_root_is_completed_from_a_bundle(self) -> None:
        pki = Hierarchy(intermediates=1)
        leaf = pki.issue("api.example")
        issuing, root = pki.ca_certificates()
        secret = [cert(leaf.certificate), cert(issuing)]
        assert trust_path(secret, leaf_thumbprint=None, at=NOW).root_missing

        path = path_with_bundles(secret, leaf_thumbprint=None, at=NOW, bundles=[cert(root)])

        assert not path.root_missing
        assert path.anchor == cert(root)
        assert [a.certificate for a in path.authorities] == [cert(issuing), cert(root)]

    def test_a_secret_holding_its_leaf_alone_finds_intermediate_and_root_in_bundles(self) -> None:
        pki = Hierarchy(intermediates=2)
        leaf = pki.issue("api.example")
        with pytest.raises(ChainError, match="missing issuer"):
            trust_path([cert(leaf.certificate)], leaf_thumbprint=None, at=NOW)
        unrelated = make_certificate("Unrelated Root", is_ca=True)
        bundles = [cert(unrelated.certificate), *(cert(c) for c in pki.ca_certificates())]

        path = path_with_bundles([cert(leaf.certificate)], leaf_thumbprint=None, at=NOW, bundles=bundles)

        assert [a.certificate for a in path.authorities] == [cert(c) for c in pki.ca_certificates()]
        assert not any("Unrelated" in note for note in path.notes)  # only what the names reach is used

    def test_a_complete_secret_keeps_its_own_path(self) -> None:
        pki = Hierarchy(intermediates=1)
        leaf = pki.issue("api.example")
        secret = [cert(leaf.certificate), *(cert(c) for c in pki.ca_certificates())]
        namesake = make_certificate(pki.root.certificate.subject.rfc4514_string(), is_ca=True)

        path = path_with_bundles(secret, leaf_thumbprint=None, at=NOW, bundles=[cert(namesake.certificate)])

        assert path == trust_path(secret, leaf_thumbprint=None, at=NOW)

    def test_bundles_that_do_not_hold_the_root_leave_the_root_missing_path(self) -> None:
        pki = Hierarchy(intermediates=1)
        leaf = pki.issue("api.example")
        secret = [cert(leaf.certificate), cert(pki.ca_certificates()[0])]
        other = Hierarchy(intermediates=0)

        path = path_with_bundles(secret, leaf_thumbprint=None, at=NOW, bundles=[cert(other.root.certificate)])

        assert path.root_missing

    def test_reached_follows_issuer_names_only(self) -> None:
        pki = Hierarchy(intermediates=2)
        leaf = pki.issue("api.example")
        unrelated = make_certificate("Unrelated Root", is_ca=True)
        pool = [cert(unrelated.certificate), *(cert(c) for c in pki.ca_certificates())]
        assert reached([cert(leaf.certificate)], pool) == [cert(c) for c in pki.ca_certificates()]


class TestDesiredBundles:
    def test_bundle_roots_are_trusted_intermediates_as_set_and_every_ca_is_known(self) -> None:
        pki = Hierarchy(intermediates=1)
        issuing, root = (cert(c) for c in pki.ca_certificates())
        for trust_intermediates in (True, False):
            desired = desired_state({}, trust_intermediates=trust_intermediates, bundles={"roots": [issuing, root]})
            assert desired.authorities[root.sha1_thumbprint].trusted is True
            assert desired.authorities[issuing.sha1_thumbprint].trusted is trust_intermediates
            assert desired.authorities[root.sha1_thumbprint].needed_by == {"trust bundle roots"}
            assert set(desired.known) == {root.sha1_thumbprint, issuing.sha1_thumbprint}
            assert desired.leaves == ()

    def test_a_root_a_path_uses_and_a_bundle_holds_is_needed_by_both(self) -> None:
        pki = Hierarchy(intermediates=1)
        leaf = pki.issue("api.example")
        secret = [cert(leaf.certificate), *(cert(c) for c in pki.ca_certificates())]
        path = trust_path(secret, leaf_thumbprint=None, at=NOW)
        version = VersionInfo("v1", True, NOW, None, None)
        root = cert(pki.root.certificate)

        desired = desired_state(
            {"api": [VersionPath(version, path, tuple(secret))]}, trust_intermediates=False, bundles={"roots": [root]}
        )

        assert desired.authorities[root.sha1_thumbprint].needed_by == {"api", "trust bundle roots"}
        assert desired.authorities[root.sha1_thumbprint].trusted is True


class TestSetting:
    def test_default_is_no_bundle(self) -> None:
        assert load_settings(BASE).trust_bundles == frozenset()

    def test_names(self) -> None:
        settings = load_settings({**BASE, "TRUST_BUNDLES": " private-roots , partner-cas "})
        assert settings.trust_bundles == {"private-roots", "partner-cas"}

    @pytest.mark.parametrize(
        ("raw", "said"),
        [
            ("*", "TRUST_BUNDLES has invalid names: '*'"),
            ("a,,b", "TRUST_BUNDLES has an empty entry"),
            ("bad_name", "TRUST_BUNDLES has invalid names: 'bad_name'"),
        ],
    )
    def test_invalid(self, raw: str, said: str) -> None:
        with pytest.raises(SettingsError, match=said):
            load_settings({**BASE, "TRUST_BUNDLES": raw})

    def test_a_name_cannot_be_a_bundle_and_a_certificate(self) -> None:
        with pytest.raises(SettingsError, match="TRUST_BUNDLES names Orders, also in CERTIFICATE_NAMES"):
            load_settings({**BASE, "TRUST_BUNDLES": "roots,Orders", "CERTIFICATE_NAMES": "orders"})


def secret_event(name: str, *, host: str = "sample-kv.vault.azure.net", object_type: str = "Secret") -> dict[str, Any]:
    return {
        "Id": f"https://{host}/secrets/{name}/a1b2c3d4e5f60718293a4b5c6d7e8f90",
        "VaultName": "sample-kv",
        "ObjectType": object_type,
        "ObjectName": name,
        "Version": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
    }


class TestSecretEvents:
    settings = load_settings({**BASE, "TRUST_BUNDLES": "Private-Roots", "CERTIFICATE_NAMES": "orders"})

    def test_a_bundle_s_new_version_reconciles_the_bundles(self) -> None:
        decision = route(SECRET_NEW_VERSION_CREATED, "e1", secret_event("private-roots"), self.settings)
        assert isinstance(decision, ReconcileBundle)
        assert decision.secret_name == "Private-Roots"  # as the setting spells it
        assert decision.event.version == "a1b2c3d4e5f60718293a4b5c6d7e8f90"

    @pytest.mark.parametrize("name", ["db-password", "orders"])  # any secret; a certificate's own secret
    def test_any_other_secret_is_ignored(self, name: str) -> None:
        decision = route(SECRET_NEW_VERSION_CREATED, "e1", secret_event(name), self.settings)
        assert isinstance(decision, Ignore)
        assert "not in TRUST_BUNDLES" in decision.reason

    def test_another_vault_is_ignored(self) -> None:
        decision = route(
            SECRET_NEW_VERSION_CREATED, "e1", secret_event("private-roots", host="x.vault.azure.net"), self.settings
        )
        assert isinstance(decision, Ignore)
        assert "not watched" in decision.reason

    def test_a_secret_event_about_a_certificate_is_malformed(self) -> None:
        with pytest.raises(EventError, match="is about a Certificate but its Id points into /secrets/"):
            route(
                SECRET_NEW_VERSION_CREATED,
                "e1",
                secret_event("private-roots", object_type="Certificate"),
                self.settings,
            )
