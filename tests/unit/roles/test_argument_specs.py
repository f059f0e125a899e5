"""Every role's defaults and its meta/argument_specs.yml must say the same thing."""

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[3] / "roles"
ROLE_NAMES = sorted(p.name for p in ROLES.iterdir() if (p / "meta" / "argument_specs.yml").exists())


def load(role, *parts):
    with open(ROLES.joinpath(role, *parts), encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_default_is_in_the_spec_with_the_same_value(role):
    defaults = load(role, "defaults", "main.yml")
    options = load(role, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]

    mismatched = {
        name: (value, options.get(name, {}).get("default", "<not in spec>"))
        for name, value in defaults.items()
        if options.get(name, {}).get("default", "<not in spec>") != value
        and not options.get(name, {}).get("required")
    }

    assert mismatched == {}


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_spec_option_is_a_default_or_required(role):
    defaults = load(role, "defaults", "main.yml")
    options = load(role, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]

    undeclared = sorted(
        name for name, spec in options.items() if name not in defaults and not spec.get("required")
    )

    assert undeclared == []


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_public_variables_carry_the_role_prefix(role):
    defaults = load(role, "defaults", "main.yml")

    assert [name for name in defaults if not name.startswith(role + "_")] == []


def test_the_update_role_keeps_the_seed_poll_delay():
    defaults = load("remote_ivr_update", "defaults", "main.yml")

    assert defaults["remote_ivr_update_permission_delay"] == 600
    assert [s["name"] for s in defaults["remote_ivr_update_services"]] == [
        "IVR Inbound",
        "IVR Outbound",
        "IVR UpIQ",
    ]
