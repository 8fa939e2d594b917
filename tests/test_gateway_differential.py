"""The gateway path model checked against a real TLS stack's verifier, `openssl verify` (tests/differential.py).

The batch here is small enough for `make test`; `python -m tests.differential 5000` runs a bigger
one. The figures are printed and kept as a test property (pytest's junit XML records them).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest

from tests import differential

PKIS = 400


def test_the_model_agrees_with_openssl_verify_on_generated_pkis(
    capsys: pytest.CaptureFixture[str], record_property: Callable[[str, object], None]
) -> None:
    assert shutil.which("openssl"), "the openssl command is required: make unit installs it (apt-get install openssl)"

    figures = differential.run(range(PKIS))

    record_property("pkis", figures.pkis)
    record_property("agreements", figures.agreements)
    record_property("disagreements", len(figures.disagreements))
    with capsys.disabled():
        print(f"\n{figures.line()}")
    assert figures.pkis == PKIS
    assert 0 < figures.accepted < figures.pkis  # both outcomes are exercised
    assert figures.disagreements == []


def test_the_generator_draws_every_feature_the_differential_claims() -> None:
    drawn = {feature for seed in range(PKIS) for feature in differential.scenario(seed).features}
    wanted = [
        "self-signed leaf",
        "rollover link",
        "cross-signed",
        "root v1",
        "root no basicConstraints",
        "root EKU clientAuth",
        "root EKU any",
        "CA1 EKU clientAuth",
        "CA1 EKU any",
        "CA1 EKU serverAuth",
        "RSA key",
        "leaf expired",
        "leaf future",
        "root expired",
        "CA1 future",
        "CA2 pathLen 0",
        "leaf EKU clientAuth",
    ]
    missing = [feature for feature in wanted if not any(d.startswith(feature) for d in drawn)]
    assert missing == []
    assert any("name constraints excluded" in d for d in drawn)
    assert any("name constraints permitted other.test" in d for d in drawn)
