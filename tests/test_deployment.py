"""DEPLOYMENT_ID: the setting that marks a deployment's ids, its default and its bounds."""

from __future__ import annotations

import hashlib

import pytest

from shared.settings import MAX_DEPLOYMENT_ID_LENGTH, Deployment, SettingsError, load_settings

BASE = {
    "KEYVAULT_URL": "https://v.vault.azure.net",
    "APIM_RESOURCE_ID": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg"
    "/providers/Microsoft.ApiManagement/service/apim",
}


def test_set_explicitly_it_is_used_as_it_is_and_legacy_ids_stay_foreign() -> None:
    settings = load_settings({**BASE, "DEPLOYMENT_ID": "teama", "WEBSITE_SITE_NAME": "func-trustsync-x"})
    assert settings.deployment == Deployment("teama", adopts_legacy=False)


def test_left_empty_in_azure_it_derives_from_the_app_name_and_adopts_legacy_ids() -> None:
    settings = load_settings({**BASE, "DEPLOYMENT_ID": " ", "WEBSITE_SITE_NAME": "Func-TrustSync-Abc"})
    expected = hashlib.sha256(b"func-trustsync-abc").hexdigest()[:MAX_DEPLOYMENT_ID_LENGTH]
    assert settings.deployment == Deployment(expected, adopts_legacy=True)
    # Another app gets another id: two deployments on one APIM service apart without a setting.
    other = load_settings({**BASE, "WEBSITE_SITE_NAME": "func-trustsync-def"})
    assert other.deployment.id != expected


def test_an_operator_on_a_laptop_acts_as_the_app_by_naming_it() -> None:
    app = load_settings({**BASE, "WEBSITE_SITE_NAME": "func-trustsync-abc"})
    laptop_by_name = load_settings({**BASE, "WEBSITE_SITE_NAME": "func-trustsync-abc"})
    laptop_by_id = load_settings({**BASE, "DEPLOYMENT_ID": app.deployment.id})
    assert laptop_by_name.deployment == app.deployment
    assert laptop_by_id.deployment.id == app.deployment.id


def test_without_either_it_is_local() -> None:
    assert load_settings(BASE).deployment == Deployment("local", adopts_legacy=True)


@pytest.mark.parametrize("raw", ["TeamA", "team-a", "team_a", "a" * (MAX_DEPLOYMENT_ID_LENGTH + 1), "é"])
def test_a_value_out_of_bounds_is_a_settings_error_naming_it(raw: str) -> None:
    with pytest.raises(SettingsError, match=r"DEPLOYMENT_ID must be 1 to 10 lower-case letters and digits"):
        load_settings({**BASE, "DEPLOYMENT_ID": raw})
