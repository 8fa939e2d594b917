"""The emulated request limits (`emulator.throttling`): ARM's token buckets and hourly windows per
subscription, principal and kind, with the remaining count on every answer; Key Vault's window per
vault. On a manual clock, so that each answer is exactly the one the model gives."""

from __future__ import annotations

import base64
import json

from emulator import Emulator
from emulator.throttling import KeyVaultLimits, hourly, token_buckets
from tests.emulator.helpers import Chain, RawResponse, der, raw, token_for

API = "api-version=2024-05-01"


class ManualClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def arm_token(emu: Emulator, client_id: str | None = None) -> str:
    return token_for(emu, emu.arm_audience, client_id)


def list_gateways(emu: Emulator, token: str) -> RawResponse:
    return raw(emu, "GET", f"{emu.apim.resource_id}/gateways?{API}", token=token)


def put_root(emu: Emulator, token: str, chain: Chain, certificate_id: str = "root") -> RawResponse:
    body = json.dumps({"properties": {"data": base64.b64encode(der(chain.root)).decode()}}).encode()
    return raw(emu, "PUT", f"{emu.apim.resource_id}/certificates/{certificate_id}?{API}", token=token, body=body)


def remaining(response: RawResponse, kind: str) -> str | None:
    return response.headers.get(f"x-ms-ratelimit-remaining-subscription-{kind}")


def test_limits_are_off_by_default_and_answers_then_carry_no_count(emu: Emulator, chain: Chain) -> None:
    token = arm_token(emu)
    answers = [put_root(emu, token, chain, f"root-{n}") for n in range(30)]
    assert {answer.status for answer in answers} == {201}
    assert all(remaining(answer, "writes") is None for answer in answers)
    assert emu.rate_limits == "arm-reads=none,arm-writes=none,arm-deletes=none,keyvault=none"


def test_a_token_bucket_counts_down_throttles_when_empty_and_refills(emu: Emulator, chain: Chain) -> None:
    clock = ManualClock()
    emu.arm_limits = token_buckets(writes=(3, 2), clock=clock)
    token = arm_token(emu)

    counted = [put_root(emu, token, chain) for _ in range(3)]
    throttled = [put_root(emu, token, chain) for _ in range(2)]

    assert [(answer.status, remaining(answer, "writes")) for answer in counted] == [(201, "2"), (200, "1"), (200, "0")]
    for answer in throttled:
        assert (answer.status, answer.headers["retry-after"], remaining(answer, "writes")) == (429, "1", "0")
        assert answer.json() == {
            "error": {
                "code": "SubscriptionRequestsThrottled",
                "message": f"Number of 'write' requests for subscription '{emu.apim.subscription_id}' actor "
                f"'{emu.tokens.issued[-1].client_id}' exceeded. Please try again after '1' seconds after additional "
                "tokens are available. Refer to https://aka.ms/arm-throttling for additional information.",
            }
        }
    # Reads have a bucket of their own (the documented 250 here).
    assert (list_gateways(emu, token).status, remaining(list_gateways(emu, token), "reads")) == (200, "248")
    # A throttled request took no token: half a second at 2/s is one write, and one only.
    clock.now += 0.5
    assert [put_root(emu, token, chain).status for _ in range(2)] == [200, 429]


def test_each_principal_has_buckets_of_its_own(chain: Chain) -> None:
    other = "0b0c9e6e-1f1a-4c53-9f5a-6d2f3b7c8a90"
    with Emulator(user_assigned_client_ids=[other]) as emu:
        emu.arm_limits = token_buckets(writes=(1, 0.001), clock=ManualClock())
        first, second = arm_token(emu), arm_token(emu, other)
        assert put_root(emu, first, chain).status == 201
        assert put_root(emu, first, chain).status == 429
        assert put_root(emu, second, chain).status == 200  # another identity: another bucket


def test_every_authenticated_answer_carries_the_count_errors_too(emu: Emulator) -> None:
    emu.arm_limits = token_buckets(clock=ManualClock())
    token = arm_token(emu)

    missing = raw(emu, "GET", f"{emu.apim.resource_id}/gateways/nope?{API}", token=token)
    deleted = raw(
        emu, "DELETE", f"{emu.apim.resource_id}/certificates/nope?{API}", token=token, headers={"If-Match": "*"}
    )
    unauthenticated = raw(emu, "GET", f"{emu.apim.resource_id}/gateways?{API}")

    assert (missing.status, remaining(missing, "reads")) == (404, "249")
    assert (deleted.status, remaining(deleted, "deletes")) == (204, "199")
    assert (unauthenticated.status, remaining(unauthenticated, "reads")) == (401, None)  # not counted


def test_the_hourly_model_is_a_window_whose_429_waits_for_its_end(emu: Emulator, chain: Chain) -> None:
    clock = ManualClock()
    emu.arm_limits = hourly(writes=2, clock=clock)
    token = arm_token(emu)

    answers = [put_root(emu, token, chain) for _ in range(3)]
    clock.now += 3599.2
    late = put_root(emu, token, chain)
    clock.now += 0.8
    next_hour = put_root(emu, token, chain)

    assert [(a.status, remaining(a, "writes")) for a in answers] == [(201, "1"), (200, "0"), (429, "0")]
    assert answers[2].headers["retry-after"] == "3600"
    assert answers[2].json()["error"] == {
        "code": "SubscriptionRequestsThrottled",
        "message": f"Number of write requests for subscription '{emu.apim.subscription_id}' exceeded the limit of "
        "'2' for time interval '01:00:00'. Please try again after '3600' seconds.",
    }
    assert (late.status, late.headers["retry-after"]) == (429, "1")  # 0.8 s, in whole seconds
    assert (next_hour.status, remaining(next_hour, "writes")) == (200, "1")
    assert emu.rate_limits.startswith("arm-reads=12000/3600s,arm-writes=2/3600s,arm-deletes=15000/3600s")


def test_key_vault_throttles_per_vault_with_its_own_body_and_no_count(emu: Emulator, chain: Chain) -> None:
    clock = ManualClock()
    emu.vault.import_certificate("tls", chain.pfx())
    emu.keyvault_limits = KeyVaultLimits(2, 10.0, retry_after_unit=0.001, clock=clock)
    token = token_for(emu, emu.keyvault_challenge_resource)

    challenge = raw(emu, "GET", "/secrets/tls?api-version=7.5")  # no token: the challenge, not counted
    answers = [raw(emu, "GET", "/secrets/tls?api-version=7.5", token=token) for _ in range(3)]
    clock.now += 10
    later = raw(emu, "GET", "/secrets/tls?api-version=7.5", token=token)

    assert challenge.status == 401
    assert [answer.status for answer in answers] == [200, 200, 429]
    assert all("x-ms-ratelimit-remaining-subscription-reads" not in answer.headers for answer in answers)
    assert answers[2].headers["retry-after"] == "10"
    assert answers[2].json() == {
        "error": {
            "code": "Throttled",
            "message": "Request was not processed because too many requests were received. "
            "Reason: VaultRequestTypeLimitReached",
        }
    }
    assert later.status == 200
    assert emu.rate_limits.endswith(",keyvault=2/10s")


def test_scaled_down_limits_are_told_to_the_product_as_it_reads_them(emu: Emulator) -> None:
    emu.arm_limits = token_buckets(writes=(40, 250), deletes=(40, 250), retry_after_unit=0.001)
    emu.keyvault_limits = KeyVaultLimits(50, 0.5)

    assert emu.environ()["TRUSTSYNC_RATE_LIMITS"] == (
        "arm-reads=250+25/s,arm-writes=40+250/s,arm-deletes=40+250/s,keyvault=50/0.5s"
    )
    emu.reset()
    assert emu.arm_limits is None
    assert emu.keyvault_limits is None
