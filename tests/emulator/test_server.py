"""The servers themselves: loopback only, TLS with the emulator's CA, keep-alive, concurrency, the CLI."""

from __future__ import annotations

import base64
import concurrent.futures
import os
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from azure.mgmt.apimanagement import ApiManagementClient
from azure.mgmt.apimanagement.models import CertificateCreateOrUpdateParameters, GatewayCertificateAuthorityContract

from emulator import Emulator
from tests.emulator.helpers import Chain, connect, der, raw, send

REPO = Path(__file__).resolve().parents[2]


def test_everything_listens_on_loopback_only(emu: Emulator) -> None:
    for url in (emu.url, emu.identity_endpoint):
        assert urlsplit(url).hostname == "127.0.0.1"
    assert {address for address, _port in emu.listening_addresses} == {"127.0.0.1"}
    assert urlsplit(emu.url).scheme == "https"
    assert urlsplit(emu.identity_endpoint).scheme == "http"  # like App Service's identity endpoint


@pytest.mark.parametrize("server_name", ["127.0.0.1", "localhost"])
def test_server_certificate_is_trusted_through_the_ca_bundle(emu: Emulator, server_name: str) -> None:
    context = ssl.create_default_context(cafile=emu.ca_bundle_path)
    port = urlsplit(emu.url).port

    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=server_name) as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_untrusting_clients_fail_the_handshake(emu: Emulator) -> None:
    system_trust_only = ssl.create_default_context()

    with (
        socket.create_connection(("127.0.0.1", urlsplit(emu.url).port), timeout=5) as sock,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        system_trust_only.wrap_socket(sock, server_hostname="127.0.0.1")
    assert raw(emu, "GET", "/certificates?api-version=7.5").status == 401  # the server survived


def test_keep_alive_serves_several_requests_on_one_connection(emu: Emulator) -> None:
    connection = connect(emu.ca_bundle_path, urlsplit(emu.url).port or 0)
    try:
        connection.request("GET", "/certificates?api-version=7.5")
        first = connection.getresponse()
        first.read()
        socket_after_first = connection.sock
        connection.request("GET", "/secrets/x/?api-version=7.5")
        second = connection.getresponse()
        second.read()
        socket_after_second = connection.sock
    finally:
        connection.close()

    assert (first.status, second.status) == (401, 401)
    assert first.getheader("Content-Length") == str(
        len(b'{"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a Bearer or PoP token."}}')
    )
    # http.client drops its socket when the server does not keep the connection alive.
    assert socket_after_first is not None
    assert socket_after_second is socket_after_first


def test_concurrent_requests_are_served_in_parallel(emu: Emulator, arm: ApiManagementClient, chain: Chain) -> None:
    emu.apim.add_gateway("gw1")
    arm.gateway.get(emu.apim.resource_group, emu.apim.name, "gw1")  # token and connection warm-up
    emu.clear_requests()
    emu.latency = 0.05
    start = threading.Barrier(8)

    def put(index: int) -> str:
        start.wait()
        parameters = CertificateCreateOrUpdateParameters(data=base64.b64encode(der(chain.root)).decode())
        arm.certificate.create_or_update(emu.apim.resource_group, emu.apim.name, f"c{index}", parameters)
        return emu.apim.certificates[f"c{index}"].etag

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        etags = list(pool.map(put, range(8)))

    assert len(set(etags)) == 8
    assert emu.count("arm.put_certificate", status=201) == 8
    assert emu.max_in_flight >= 2


def test_request_records_and_counting(emu: Emulator, arm: ApiManagementClient, chain: Chain) -> None:
    emu.apim.add_gateway("gw1")
    emu.apim.add_certificate("root", der(chain.root))
    rg, name = emu.apim.resource_group, emu.apim.name

    arm.gateway.get(rg, name, "gw1")
    arm.gateway_certificate_authority.create_or_update(
        rg, name, "gw1", "root", GatewayCertificateAuthorityContract(is_trusted=True)
    )
    arm.certificate.delete(rg, name, "other", if_match="*")

    assert emu.count() == 4
    assert emu.count("arm.") == 3
    assert emu.count(writes=True) == 2
    assert emu.count("arm.delete_certificate", status=204) == 1
    put = next(r for r in emu.requests if r.operation == "arm.put_gateway_ca")
    assert (put.method, put.is_write, put.api_version) == ("PUT", True, "2024-05-01")
    assert put.path == f"{emu.apim.resource_id}/gateways/gw1/certificateAuthorities/root"
    assert put.headers["authorization"] == "<redacted>"
    emu.clear_requests()
    assert emu.requests == []
    assert emu.count() == 0


def test_environ_points_the_product_at_the_emulator(emu: Emulator) -> None:
    environment = emu.environ(APIM_GATEWAYS="gw1", AZURE_CLIENT_ID="0b0c9e6e-1f1a-4c53-9f5a-6d2f3b7c8a90")

    assert environment["KEYVAULT_URL"] == environment["ARM_ENDPOINT"] == emu.url
    assert environment["APIM_RESOURCE_ID"] == emu.apim.resource_id
    assert environment["IDENTITY_ENDPOINT"] == emu.identity_endpoint
    assert environment["IDENTITY_HEADER"] == emu.identity_header
    assert environment["REQUESTS_CA_BUNDLE"] == emu.ca_bundle_path
    assert Path(emu.ca_bundle_path).read_bytes() == emu.ca_pem
    assert environment["AZURE_CLOUD"] == "AzureCloud"
    assert environment["APIM_GATEWAYS"] == "gw1"
    assert environment["AZURE_CLIENT_ID"] == "0b0c9e6e-1f1a-4c53-9f5a-6d2f3b7c8a90"


def test_stop_removes_the_ca_bundle_and_closes_the_ports() -> None:
    emu = Emulator().start()
    bundle, port = emu.ca_bundle_path, urlsplit(emu.url).port

    emu.stop()

    assert not Path(bundle).exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_python_api_is_usable_before_start() -> None:
    emu = Emulator()
    try:
        emu.apim.add_gateway("gw1")
        assert emu.url.startswith("https://127.0.0.1:")
    finally:
        emu.stop()


def test_standalone_prints_exports_and_serves_until_interrupted() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--page-size", "3"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        exports: dict[str, str] = {}
        while not (line := process.stdout.readline()).startswith("# ready"):
            assert line, "the emulator exited before it was ready"
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").strip().partition("=")
                exports[name] = shlex.split(value)[0]
        assert "gw-east" in line
        assert "demo-api-tls" in line

        identity = send(
            "GET",
            f"{exports['IDENTITY_ENDPOINT']}?api-version=2019-08-01&resource={exports['KEYVAULT_URL'].replace('127.0.0.1', '0.0.1')}",
            ca_bundle=exports["REQUESTS_CA_BUNDLE"],
            headers={"X-IDENTITY-HEADER": exports["IDENTITY_HEADER"]},
        )
        listed = send(
            "GET",
            f"{exports['KEYVAULT_URL']}/certificates?api-version=7.5",
            ca_bundle=exports["REQUESTS_CA_BUNDLE"],
            token=identity.json()["access_token"],
        )
        assert listed.status == 200
        assert [item["id"].rsplit("/", 1)[1] for item in listed.json()["value"]] == ["demo-api-tls"]
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "# emulator stopped" in output
    assert not Path(exports["REQUESTS_CA_BUNDLE"]).exists()
