"""Request budgets, counted from the emulator's request records of the real functions.

Reads and writes are Key Vault and ARM requests. Identity token requests (``identity.token``) and
Key Vault's bodiless challenge (``kv.challenge``, a 401 each SDK client gets once) are protocol
overhead: they are counted apart, and must not grow with certificates, gateways or concurrency.
Budget runs happen on a warm worker (the same configuration's cached clients, as Functions keeps
them between invocations), so they have none; but one that has read no version yet (`measure_from_here`):
a worker keeps the certificates of the versions it has read, and the budgets are what a worker new to
the vault's versions pays (Flex scales to zero between audits). A worker that knows them pays less
(`test_a_warm_worker_reads_only_the_secrets_of_versions_it_has_not_seen`).

The emulator's page size is large enough that each list is one page, except in the paging test,
which shows that pages add list requests but never per-item reads. Counting distinct list paths
is what makes "one list" precise: every page of a list has the same path.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from emulator import Emulator, RequestRecord
from emulator.pki import Hierarchy
from shared.settings import SETTINGS
from tests.support.harness import Backend, audit, deliver, holds, import_version, resync, trusted

ONE_PAGE = 100  # items per page: every list of these estates fits in one
HOLD_TIMEOUT = 20  # seconds a held request waits for the writes before the test fails
OVERHEAD = frozenset({"identity.token", "kv.challenge"})
EVENT_READS = frozenset(
    {
        "kv.list_certificate_versions",
        "kv.get_secret",
        "arm.list_certificates",
        "arm.list_gateways",
        "arm.list_gateway_cas",
        "arm.get_service",  # the service's kind and CA store: once per run
    }
)
MONTH_AGO = datetime.now(UTC) - timedelta(days=30)


class Estate:
    """An emulator with self-hosted gateways ``gw-01`` ... ``gw-G``, the app configured against it."""

    def __init__(self, emu: Emulator, gateways: int) -> None:
        self.emu = emu
        self.gateways = [f"gw-{n:02d}" for n in range(1, gateways + 1)]
        for gateway in self.gateways:
            emu.apim.add_gateway(gateway)

    def trusted_certificate(self, name: str = "orders", pki: Hierarchy | None = None) -> Backend:
        """A certificate whose chain every gateway trusts already (put there by the app itself)."""
        backend = import_version(self.emu, name, pki or Hierarchy(intermediates=1), created=MONTH_AGO)
        deliver(self.emu.vault.certificate_event(name))
        assert self.trusts(backend.authority_ids)
        return backend

    def measure_from_here(self) -> None:
        """Forget the requests so far, and the versions the worker has read (their secrets are read again)."""
        import function_app  # once the environment points at the emulator: it checks its settings at import

        self.emu.clear_requests()
        function_app.trust_sync.known.clear()

    def trusts(self, ids: set[str]) -> bool:
        return set(trusted(self.emu)) == set(self.gateways) and all(holds(self.emu, gw, ids) for gw in self.gateways)


MakeEstate = Callable[..., Estate]


@pytest.fixture
def make_estate(monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeEstate]:
    """``make_estate(G, page_size=..., SETTING=value)``: a started emulator the app is configured against."""
    started: list[Emulator] = []

    def make(gateways: int, *, page_size: int = ONE_PAGE, **settings: str) -> Estate:
        emu = Emulator(page_size=page_size).start()
        started.append(emu)
        for setting in SETTINGS:
            monkeypatch.delenv(setting.name, raising=False)
        for name in ("AZURE_CLIENT_ID", "MSI_ENDPOINT", "HTTPS_PROXY", "HTTP_PROXY"):
            monkeypatch.delenv(name, raising=False)
        for name, value in emu.environ(**settings).items():
            monkeypatch.setenv(name, value)
        return Estate(emu, gateways)

    yield make
    for emu in started:
        emu.stop()


def calls(emu: Emulator) -> Counter[str]:
    """Key Vault + ARM requests by operation (every page counts), protocol overhead left out."""
    return Counter(r.operation for r in emu.requests if r.operation not in OVERHEAD)


def overhead(emu: Emulator) -> dict[str, int]:
    """Protocol overhead by operation, zeros included."""
    counted = Counter(r.operation for r in emu.requests if r.operation in OVERHEAD)
    return {name: counted[name] for name in sorted(OVERHEAD)}


def paths(emu: Emulator, operation: str) -> set[str]:
    """Distinct paths of an operation: one per list, however many pages it took."""
    return {r.path.lower() for r in emu.requests if r.operation == operation}


def writes(emu: Emulator) -> Counter[str]:
    return Counter(r.operation for r in emu.requests if r.is_write)


def assert_event_reads_within_budget(emu: Emulator, gateways: int, *, secrets: int) -> None:
    """<= 1 version list + 2 secret reads + 1 certificate list + 1 gateway list + G gateway-CA lists + the service."""
    reads = Counter({op: n for op, n in calls(emu).items() if not op.startswith(("arm.put", "arm.delete"))})
    assert set(reads) <= EVENT_READS, f"reads outside the budget: {set(reads) - EVENT_READS}"
    assert len(paths(emu, "kv.list_certificate_versions")) == reads["kv.list_certificate_versions"] == 1
    assert reads["kv.get_secret"] == secrets <= 2
    assert len(paths(emu, "arm.list_certificates")) == reads["arm.list_certificates"] == 1
    assert len(paths(emu, "arm.list_gateways")) == reads["arm.list_gateways"] == 1
    assert reads["arm.get_service"] == 1
    assert len(paths(emu, "arm.list_gateway_cas")) == reads["arm.list_gateway_cas"] == gateways
    assert overhead(emu) == {"identity.token": 0, "kv.challenge": 0}  # a warm worker


@pytest.mark.parametrize("gateways", [1, 5])
def test_a_duplicate_event_reads_within_budget_and_writes_nothing(make_estate: MakeEstate, gateways: int) -> None:
    estate = make_estate(gateways)
    estate.trusted_certificate()
    event = estate.emu.vault.certificate_event("orders")
    estate.measure_from_here()

    deliver(event)

    assert writes(estate.emu) == {}
    assert_event_reads_within_budget(estate.emu, gateways, secrets=1)  # the certificate has one version


@pytest.mark.parametrize("gateways", [1, 5])
def test_a_leaf_only_rotation_reads_within_budget_and_writes_nothing(make_estate: MakeEstate, gateways: int) -> None:
    estate = make_estate(gateways)
    pki = Hierarchy(intermediates=1)
    estate.trusted_certificate(pki=pki)
    import_version(estate.emu, "orders", pki)  # a renewed leaf from the same intermediate and root
    estate.measure_from_here()

    deliver(estate.emu.vault.certificate_event("orders"))

    assert writes(estate.emu) == {}
    assert_event_reads_within_budget(estate.emu, gateways, secrets=2)  # the new version and the previous one


@pytest.mark.parametrize("gateways", [1, 5])
def test_a_new_intermediate_and_root_cost_two_uploads_and_two_puts_per_gateway(
    make_estate: MakeEstate, gateways: int
) -> None:
    estate = make_estate(gateways)
    estate.trusted_certificate()
    new = import_version(estate.emu, "orders", Hierarchy(intermediates=1, organization="Fabrikam"))
    estate.measure_from_here()

    deliver(estate.emu.vault.certificate_event("orders"))

    assert writes(estate.emu) == {"arm.put_certificate": 2, "arm.put_gateway_ca": 2 * gateways}
    assert len(paths(estate.emu, "arm.put_gateway_ca")) == 2 * gateways  # no write repeated
    assert_event_reads_within_budget(estate.emu, gateways, secrets=2)
    assert estate.trusts(new.authority_ids)


@pytest.mark.parametrize(("certificates", "gateways"), [(2, 1), (6, 1), (2, 4), (6, 4)])
def test_a_full_audit_reads_grow_with_certificates_plus_gateways(
    make_estate: MakeEstate, certificates: int, gateways: int
) -> None:
    """Exact counts for C certificates (one version each) on G gateways: Key Vault 1 + 2C, APIM 2 + G.
    The four estates show each side depends on its own size only: never on C x G."""
    estate = make_estate(gateways)
    pki = Hierarchy(intermediates=1)
    for n in range(certificates):
        import_version(estate.emu, f"svc-{n}", pki, hostname=f"svc-{n}.internal.example")
    assert resync().status == 200  # the estate in sync, as the audit usually finds it
    estate.measure_from_here()

    audit()

    assert writes(estate.emu) == {}
    assert calls(estate.emu) == {
        "kv.list_certificates": 1,
        "kv.list_certificate_versions": certificates,
        "kv.get_secret": certificates,
        "arm.list_certificates": 1,
        "arm.list_gateways": 1,
        "arm.list_gateway_cas": gateways,
        "arm.get_service": 1,  # once per run, whatever the size
    }
    assert len(paths(estate.emu, "kv.list_certificate_versions")) == certificates
    assert len(paths(estate.emu, "arm.list_gateway_cas")) == gateways
    assert overhead(estate.emu) == {"identity.token": 0, "kv.challenge": 0}


def test_a_no_op_full_resync_reads_key_vault_once(make_estate: MakeEstate) -> None:
    """A full resync (it may remove) that finds nothing to remove takes no last look: one version
    list and one secret per certificate, as an audit."""
    estate = make_estate(2)
    pki = Hierarchy(intermediates=1)
    for n in range(3):
        import_version(estate.emu, f"svc-{n}", pki, hostname=f"svc-{n}.internal.example")
    assert resync().status == 200
    estate.measure_from_here()

    assert resync().status == 200

    assert writes(estate.emu) == {}
    reads = calls(estate.emu)
    assert (reads["kv.list_certificates"], reads["kv.list_certificate_versions"], reads["kv.get_secret"]) == (1, 3, 3)


def test_a_warm_worker_reads_only_the_secrets_of_versions_it_has_not_seen(make_estate: MakeEstate) -> None:
    """Key Vault versions never change: an audit on a worker that has read them reads no secret;
    a version that lands between two audits is the only secret the next one reads."""
    estate = make_estate(2)
    pki = Hierarchy(intermediates=1)
    for n in range(3):
        import_version(estate.emu, f"svc-{n}", pki, hostname=f"svc-{n}.internal.example")
    assert resync().status == 200  # the worker reads every version once
    estate.emu.clear_requests()  # the worker keeps what it read

    audit()
    assert calls(estate.emu)["kv.get_secret"] == 0
    assert calls(estate.emu)["kv.list_certificate_versions"] == 3  # a new version would show there

    import_version(estate.emu, "svc-1", pki, hostname="svc-1.internal.example")
    estate.emu.clear_requests()
    audit()
    secrets = [r.path for r in estate.emu.requests if r.operation == "kv.get_secret"]
    assert len(secrets) == 1
    assert "/svc-1/" in secrets[0].lower()
    assert writes(estate.emu) == {}


def test_paging_adds_list_pages_but_never_per_item_reads(make_estate: MakeEstate) -> None:
    """Page size 2: C=5 certificates (one with 5 versions) from 3 hierarchies (6 CAs) on G=3 gateways."""
    estate = make_estate(3, page_size=2)
    pkis = [Hierarchy(intermediates=1, organization=f"Org{n}") for n in range(3)]
    for n in range(5):
        import_version(estate.emu, f"svc-{n}", pkis[n % 3], created=MONTH_AGO, hostname=f"svc-{n}.example")
    for days in range(4, 0, -1):  # svc-0 gets 4 more versions: its version list takes 3 pages
        import_version(estate.emu, "svc-0", pkis[0], created=datetime.now(UTC) - timedelta(days=days))
    assert resync().status == 200
    estate.measure_from_here()

    audit()

    assert writes(estate.emu) == {}
    assert calls(estate.emu) == {
        "kv.list_certificates": 3,  # 5 names, 2 a page
        "kv.list_certificate_versions": 4 + 3,  # four 1-version lists, one 5-version list
        "kv.get_secret": 4 + 2,  # one per certificate, two for svc-0 (latest and previous): never per page
        "arm.list_certificates": 3,  # 6 CAs
        "arm.list_gateways": 2,  # 3 gateways
        "arm.list_gateway_cas": 3 * 3,  # 6 CAs on each of 3 gateways
        "arm.get_service": 1,  # one GET, never paged
    }
    assert len(paths(estate.emu, "kv.list_certificates")) == 1
    assert len(paths(estate.emu, "kv.list_certificate_versions")) == 5
    assert len(paths(estate.emu, "arm.list_gateway_cas")) == 3


@pytest.mark.parametrize(("certificates", "gateways"), [(1, 1), (8, 6)])
def test_protocol_overhead_is_once_per_audience_and_client_on_a_cold_worker(
    make_estate: MakeEstate, certificates: int, gateways: int
) -> None:
    """A cold worker (fresh credential and clients) with 8 calls in flight: one token per audience
    (Key Vault, ARM) and one challenge per Key Vault client (certificates, secrets), whatever the size."""
    estate = make_estate(gateways, MAX_CONCURRENCY="8")
    pki = Hierarchy(intermediates=1)
    for n in range(certificates):
        import_version(estate.emu, f"svc-{n}", pki, hostname=f"svc-{n}.example")
    estate.measure_from_here()

    assert resync().status == 200  # the worker's first invocation: every client is new

    assert overhead(estate.emu) == {"identity.token": 2, "kv.challenge": 2}
    assert estate.trusts({cid for cid in estate.emu.apim.certificates})


def test_concurrent_invocations_on_a_cold_worker_share_its_tokens_and_challenges(make_estate: MakeEstate) -> None:
    """Invocations at once run on the worker's one event loop and share its clients: three events
    arriving together on a cold worker still fetch one token per audience and meet one challenge per
    Key Vault client."""
    estate = make_estate(2, MAX_CONCURRENCY="4")
    names = [f"svc-{n}" for n in range(3)]
    for name in names:
        import_version(estate.emu, name, Hierarchy(intermediates=1, organization=name), hostname=f"{name}.example")
    events = [estate.emu.vault.certificate_event(name) for name in names]
    arrived = threading.Barrier(len(events), timeout=HOLD_TIMEOUT)

    def deliver_together(event: dict[str, object]) -> None:
        arrived.wait()
        deliver(event)

    estate.measure_from_here()
    threads = [threading.Thread(target=deliver_together, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HOLD_TIMEOUT)

    assert not any(thread.is_alive() for thread in threads)
    assert overhead(estate.emu) == {"identity.token": 2, "kv.challenge": 2}
    assert estate.trusts({cid for cid in estate.emu.apim.certificates})
    assert writes(estate.emu)["arm.put_certificate"] == 2 * len(names)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_no_more_than_max_concurrency_calls_are_in_flight(make_estate: MakeEstate, concurrency: int) -> None:
    estate = make_estate(8, MAX_CONCURRENCY=str(concurrency))
    estate.trusted_certificate()
    new = import_version(estate.emu, "orders", Hierarchy(intermediates=1, organization="Fabrikam"))
    estate.emu.latency = 0.02  # each call takes a while, so that calls that may overlap do
    estate.measure_from_here()

    deliver(estate.emu.vault.certificate_event("orders"))

    assert estate.trusts(new.authority_ids)
    # Each service has MAX_CONCURRENCY slots of its own: Key Vault's calls never wait for ARM's.
    peaks = {service: peak_in_flight(estate.emu, service) for service in ("kv.", "arm.")}
    if concurrency == 1:
        assert peaks == {"kv.": 1, "arm.": 1}  # the naive baseline: one call at a time to each service
    else:
        assert 2 <= peaks["arm."] <= concurrency  # the 8 gateways' CA lists and puts overlap
        assert 1 <= peaks["kv."] <= concurrency


def peak_in_flight(emu: Emulator, service: str) -> int:
    """The most requests of one service (operations starting with `service`) served at once."""
    edges = sorted(
        (moment, change)
        for r in emu.requests
        if r.operation.startswith(service)
        for moment, change in ((r.started, 1), (r.finished, -1))
    )  # at equal moments an end (-1) sorts first: touching requests do not overlap
    peak = current = 0
    for _, change in edges:
        current += change
        peak = max(peak, current)
    return peak


def test_a_throttled_put_is_sent_again_once_and_the_run_completes(make_estate: MakeEstate) -> None:
    """A 429 with Retry-After on one gateway's put: the pacer waits it out (ARM's 429 speaks for the
    principal's whole write bucket, so the other writes wait too) and sends that put again, once;
    the event completes with every put applied and nothing else sent twice."""
    estate = make_estate(4, MAX_CONCURRENCY="2")
    estate.trusted_certificate()
    new = import_version(estate.emu, "orders", Hierarchy(intermediates=1, organization="Fabrikam"))
    fault = estate.emu.faults.add("arm.put_gateway_ca", status=429, retry_after=1.0)
    estate.measure_from_here()

    deliver(estate.emu.vault.certificate_event("orders"))

    assert fault.fired == 1
    assert estate.trusts(new.authority_ids)
    puts = [r for r in estate.emu.requests if r.operation == "arm.put_gateway_ca"]
    throttled: RequestRecord = next(r for r in puts if r.status == 429)
    retried = [r for r in puts if r.path == throttled.path and r is not throttled]
    assert [r.status for r in retried] in ([200], [201])
    assert len({r.path for r in puts}) == len(puts) - 1 == 2 * 4  # every put once, the throttled one twice
    assert throttled.finished <= retried[0].started


def test_an_events_uploads_and_puts_do_not_wait_for_every_gateways_ca_list(make_estate: MakeEstate) -> None:
    """Writes start as their own inputs arrive: while one gateway's CA list is held unanswered, the
    rotation's uploads and the other gateways' puts go ahead; the held gateway is served after."""
    estate = make_estate(3)
    estate.trusted_certificate()
    new = import_version(estate.emu, "orders", Hierarchy(intermediates=1, organization="Fabrikam"))
    uploaded, others_trusted = threading.Event(), threading.Event()
    lock = threading.Lock()  # the hooks run on the emulator's request threads
    held_until: list[bool] = []
    puts = 0

    def hold_the_first_ca_list() -> None:
        with lock:
            first = not held_until
            held_until.append(False)
        if first:  # the first CA list request only; the others go straight on
            held_until[0] = uploaded.wait(HOLD_TIMEOUT) and others_trusted.wait(HOLD_TIMEOUT)

    def count_puts() -> None:
        nonlocal puts
        with lock:
            puts += 1
            if puts == 2 * 2:  # both new CAs on the two gateways not held
                others_trusted.set()

    estate.emu.faults.add("arm.list_gateway_cas", status=None, times=3, hook=hold_the_first_ca_list)
    estate.emu.faults.add("arm.put_certificate", status=None, times=2, after_write=True, hook=uploaded.set)
    estate.emu.faults.add("arm.put_gateway_ca", status=None, times=2 * 3, after_write=True, hook=count_puts)
    estate.measure_from_here()

    deliver(estate.emu.vault.certificate_event("orders"))

    assert held_until == [True, False, False], "the writes waited for the held CA list"
    assert estate.trusts(new.authority_ids)
    assert writes(estate.emu) == {"arm.put_certificate": 2, "arm.put_gateway_ca": 2 * 3}
