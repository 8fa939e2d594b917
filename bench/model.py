"""The round-trip bound: the fewest sequential rounds of Azure calls a scenario's dependencies allow.

A scenario is modelled as a DAG of the calls the request budget allows (no more), each taking one
round trip L. A call may start only when the calls it depends on have answered:

- a paged list is a chain: page k+1 is asked for with page k's ``nextLink``;
- a Key Vault version list needs the list page that named the certificate (full scope), and the
  secret reads need the *whole* version list (the versions to trust are chosen among all of them);
- a gateway's CA list needs the gateway-list page that named the gateway;
- an upload needs the secret that holds the CA and the whole APIM certificate list (is it there,
  under any id?); a gateway CA put needs its upload and the whole CA list of that gateway.

With at most P calls in flight, the bound is the makespan of the DAG on P slots with unit-time
calls: the fewest rounds of at most P concurrent calls in which every call comes after the calls
it needs. It is computed by list scheduling (each round starts up to P ready calls) under a few
priority rules, keeping the best: highest level first (Hu's rule: the longest chain still behind
a call), ties broken by most calls waiting on it, and the other way round. `lower_rounds` is a
bound no schedule can beat: the longest chain; ceil(N / P); and, round by round, no more than P
calls, nor calls whose chain from the start (or to the end) is longer than the rounds so far.
When the two agree (`optimal` in the JSON) the bound is exact.
Everything is data-dependency only: the engine's own structure (it plans once, after every read)
is *not* assumed, so whatever that structure costs shows in the ratio wall / bound.

Bound = rounds x L. The naive baseline makes one call at a time: its bound is N x L.
On a warm worker there are no identity token requests or Key Vault challenges. On a fresh worker
(`cold`), one token per audience and one challenge per Key Vault client come first, all in one round:
an event then has five rounds on its longest chain (token/challenge, version list, secret, upload,
gateway CA put).
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

KV_PAGE_MAX = 25  # Key Vault's maxresults ceiling: its lists never page more coarsely


def pages(items: int, page_size: int) -> int:
    """Requests one paged list takes: an empty list is still one request."""
    return max(1, math.ceil(items / page_size))


@dataclass
class Dag:
    """Calls (operation names) and what each must wait for. Calls are added in dependency order."""

    operations: list[str] = field(default_factory=list)
    after: list[tuple[int, ...]] = field(default_factory=list)
    # What every call of an operation (or of a service, by its prefix "kv."/"arm.") waits for besides
    # its own dependencies: a cold worker's token and challenge (`cold`).
    requires: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def call(self, operation: str, after: Iterable[int] = ()) -> int:
        extra = self.requires.get(operation, ()) + self.requires.get(operation.split(".", 1)[0] + ".", ())
        deps = tuple(after) + extra
        assert all(0 <= dep < len(self.operations) for dep in deps)
        self.operations.append(operation)
        self.after.append(deps)
        return len(self.operations) - 1

    def paged(self, operation: str, items: int, page_size: int, after: Iterable[int] = ()) -> list[int]:
        """A paged list: one call per page, each after the previous one."""
        ids = [self.call(operation, after)]
        for _ in range(pages(items, page_size) - 1):
            ids.append(self.call(operation, [ids[-1]]))
        return ids

    @property
    def size(self) -> int:
        return len(self.operations)

    def counts(self) -> Counter[str]:
        return Counter(self.operations)

    def longest_chain(self) -> int:
        return max(self._levels(), default=0)

    def service(self, call: int) -> str:
        """The service a call goes to (its operation's prefix: kv, arm): each has its own slots."""
        return self.operations[call].split(".", 1)[0]

    def rounds(self, concurrency: int) -> int:
        """Makespan on `concurrency` slots per service with unit-time calls: the best of a few list schedules."""
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        level, waiting = self._levels(), self._descendants()
        rules: tuple[Callable[[int], tuple[int, ...]], ...] = (
            lambda call: (-level[call], -waiting[call], call),
            lambda call: (-waiting[call], -level[call], call),
            lambda call: (-level[call], call),
        )
        return min(self._schedule(concurrency, rule) for rule in rules)

    def _schedule(self, concurrency: int, priority: Callable[[int], tuple[int, ...]]) -> int:
        waiting_on = [len(deps) for deps in self.after]
        dependents = self._dependents()
        ready = [(priority(call), call) for call in range(self.size) if waiting_on[call] == 0]
        heapq.heapify(ready)
        done = rounds = 0
        while done < self.size:
            started, deferred, slots = [], [], Counter[str]()
            while ready:
                entry = heapq.heappop(ready)
                service = self.service(entry[1])
                if slots[service] < concurrency:
                    slots[service] += 1
                    started.append(entry[1])
                else:
                    deferred.append(entry)
            for entry in deferred:
                heapq.heappush(ready, entry)
            assert started, "the DAG has a cycle"
            rounds += 1
            done += len(started)
            for call in started:
                for dependent in dependents[call]:
                    waiting_on[dependent] -= 1
                    if waiting_on[dependent] == 0:
                        heapq.heappush(ready, (priority(dependent), dependent))
        return rounds

    def lower_rounds(self, concurrency: int) -> int:
        """No schedule on `concurrency` slots takes fewer rounds than this."""
        per_service = Counter(self.service(call) for call in range(self.size))
        bound = max(self.longest_chain(), *(math.ceil(n / concurrency) for n in per_service.values()))
        for depths in (self._depths(), self._levels()):  # from the start, and (mirrored) to the end
            for service, size in per_service.items():  # each service's calls on its own slots
                available = Counter(d for call, d in enumerate(depths) if self.service(call) == service)
                done = rounds = ready = 0
                while done < size:
                    rounds += 1
                    ready += available[rounds]  # calls whose chain from the start fits in `rounds` rounds
                    done = min(done + concurrency, ready)
                bound = max(bound, rounds)
        return bound

    def _dependents(self) -> list[list[int]]:
        dependents: list[list[int]] = [[] for _ in self.operations]
        for call, deps in enumerate(self.after):
            for dep in deps:
                dependents[dep].append(call)
        return dependents

    def _descendants(self) -> list[int]:
        """How many calls wait, directly or not, on each call."""
        dependents = self._dependents()
        below: list[set[int]] = [set() for _ in self.operations]
        for call in range(self.size - 1, -1, -1):
            for dependent in dependents[call]:
                below[call] |= {dependent} | below[dependent]
        return [len(calls) for calls in below]

    def _depths(self) -> list[int]:
        """Each call's depth: the calls on the longest chain from the start to it, itself included."""
        depth = [1] * self.size
        for call in range(self.size):
            for dep in self.after[call]:
                depth[call] = max(depth[call], depth[dep] + 1)
        return depth

    def _levels(self) -> list[int]:
        """Each call's level: the calls on the longest chain from it to the end, itself included."""
        level = [1] * self.size
        for call in range(self.size - 1, -1, -1):
            for dep in self.after[call]:
                level[dep] = max(level[dep], level[call] + 1)
        return level


@dataclass(frozen=True)
class Estate:
    """What APIM holds before the run (the KV side is described by each scenario)."""

    gateways: int
    apim_certificates: int  # certificates in APIM
    cas_per_gateway: int  # certificate authorities on each gateway
    page_size: int  # the emulator's page size (Key Vault: also capped at 25)


def _observe(dag: Dag, estate: Estate) -> tuple[int, dict[int, int]]:
    """APIM reads: the certificate list, the gateway list, then each gateway's CA list.

    Returns the last page of the certificate list and, per gateway, the last page of its CA list.
    """
    certificates = dag.paged("arm.list_certificates", estate.apim_certificates, estate.page_size)
    dag.call("arm.get_service")  # the service's kind and CA store: once per run, never paged
    gateway_pages = dag.paged("arm.list_gateways", estate.gateways, estate.page_size)
    ca_lists = {}
    for gateway in range(estate.gateways):
        named_on = gateway_pages[gateway // estate.page_size]
        ca_lists[gateway] = dag.paged("arm.list_gateway_cas", estate.cas_per_gateway, estate.page_size, [named_on])[-1]
    return certificates[-1], ca_lists


def cold(dag: Dag) -> Dag:
    """A fresh worker's protocol calls, before any other: one identity token per audience (Key Vault,
    ARM) and one Key Vault challenge per SDK client (certificates, secrets). Each takes a round trip;
    none needs another's answer (the Key Vault token's scope is the vault's, known before its
    challenge), so together they are one round. Every Key Vault call needs the Key Vault token and
    its client's challenge, every ARM call the ARM token."""
    assert dag.size == 0, "the protocol calls come first"
    kv_token, arm_token = dag.call("identity.token"), dag.call("identity.token")
    certificates, secrets = dag.call("kv.challenge"), dag.call("kv.challenge")
    dag.requires = {
        "kv.list_certificates": (kv_token, certificates),
        "kv.list_certificate_versions": (kv_token, certificates),
        "kv.get_secret": (kv_token, secrets),
        "arm.": (arm_token,),
    }
    return dag


PROTOCOL = ("identity.token", "kv.challenge")  # a cold worker's overhead: counted apart from reads and writes


def rotation(estate: Estate, *, versions: int, new_cas: int, fresh: bool = False) -> Dag:
    """An event: one certificate's version list, the secrets of the latest and previous versions,
    the APIM reads; then `new_cas` uploads, each trusted on every gateway. `fresh`: on a new worker
    (its tokens and challenges first)."""
    dag = cold(Dag()) if fresh else Dag()
    kv_page = min(estate.page_size, KV_PAGE_MAX)
    listed = dag.paged("kv.list_certificate_versions", versions, kv_page)[-1]
    latest, _previous = (dag.call("kv.get_secret", [listed]) for _ in range(2))
    certificate_list, ca_lists = _observe(dag, estate)
    for _ in range(new_cas):
        upload = dag.call("arm.put_certificate", [latest, certificate_list])
        for gateway in range(estate.gateways):
            dag.call("arm.put_gateway_ca", [upload, ca_lists[gateway]])
    return dag


def full_audit(estate: Estate, *, certificates: int, versions: int = 1, fresh: bool = False) -> Dag:
    """The drift audit of an estate in sync: every bound certificate's versions and secrets,
    every APIM read, no writes (and so no re-read of Key Vault before removals)."""
    dag = cold(Dag()) if fresh else Dag()
    kv_page = min(estate.page_size, KV_PAGE_MAX)
    for page, listed in enumerate(dag.paged("kv.list_certificates", certificates, kv_page)):
        for _ in range(min(kv_page, certificates - page * kv_page)):
            version_list = dag.paged("kv.list_certificate_versions", versions, kv_page, [listed])[-1]
            for _ in range(min(versions, 2)):
                dag.call("kv.get_secret", [version_list])
    _observe(dag, estate)
    return dag


@dataclass(frozen=True)
class Bound:
    calls: int
    rounds: int
    lower_rounds: int
    longest_chain: int
    concurrency: int
    latency: float

    @property
    def seconds(self) -> float:
        return self.rounds * self.latency

    @property
    def unlimited_seconds(self) -> float:
        """The bound at unlimited concurrency: the longest chain of round trips."""
        return self.longest_chain * self.latency

    @property
    def optimal(self) -> bool:
        return self.rounds == self.lower_rounds


def bound(dag: Dag, concurrency: int, latency: float) -> Bound:
    return Bound(
        calls=dag.size,
        rounds=dag.rounds(concurrency),
        lower_rounds=dag.lower_rounds(concurrency),
        longest_chain=dag.longest_chain(),
        concurrency=concurrency,
        latency=latency,
    )


def reads_and_writes(counts: Counter[str], writes: Sequence[str] = ("arm.put_", "arm.delete_")) -> tuple[int, int]:
    """Key Vault and ARM requests (protocol calls not counted), split into reads and writes."""
    written = sum(n for op, n in counts.items() if op.startswith(tuple(writes)))
    return sum(n for op, n in counts.items() if op not in PROTOCOL) - written, written
