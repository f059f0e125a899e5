# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the capacity_batches filter: the fleet guard's batch sizes for `serial`."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.prairiefyre.updater.plugins.filter.capacity_batches import (
    FilterModule,
    capacity_batches,
)

EQUAL = {"ivr01": 1, "ivr02": 1, "ivr03": 1, "ivr04": 1}
PORTS = {"ivr01": 16, "ivr02": 16, "ivr03": 32, "ivr04": 64}

CASES = [
    pytest.param(list(EQUAL), EQUAL, 0.25, [1, 1, 1, 1], id="quarter-of-four-equal"),
    pytest.param(list(EQUAL), EQUAL, 0.5, [2, 2], id="half-of-four-equal"),
    pytest.param(list(EQUAL), EQUAL, 1, [4], id="whole-fleet-at-once"),
    pytest.param(list(EQUAL), EQUAL, 0.3, [1, 1, 1, 1], id="share-below-two-hosts"),
    pytest.param(["ivr01", "ivr02", "ivr03"], PORTS, 0.25, [2, 1], id="ports-exactly-at-limit"),
    pytest.param(["ivr03", "ivr01", "ivr02"], PORTS, 0.25, [1, 2], id="order-is-kept"),
    pytest.param(["ivr04", "ivr01"], PORTS, 0.25, [1, 1], id="host-over-limit-goes-alone"),
    pytest.param(["ivr02", "ivr04"], PORTS, 0.1, [1, 1], id="every-host-over-limit"),
    pytest.param(["ivr01"], PORTS, 0.25, [1], id="only-one-host-to-update"),
    pytest.param([], PORTS, 0.25, [], id="nothing-to-update"),
    pytest.param(
        ["a", "b", "c"], {"a": 0, "b": 4, "c": 0, "d": 4}, 0.5, [3], id="zero-capacity-joins"
    ),
    pytest.param(["a", "b"], {"a": "4", "b": 4.0, "c": 8}, 0.5, [2], id="numbers-as-strings"),
    pytest.param(["a", "b", "c"], {"a": 1, "b": 1, "c": 1}, "0.67", [2, 1], id="share-string"),
    pytest.param(
        [f"h{i}" for i in range(10)],
        {f"h{i}": 3 for i in range(10)},
        0.1 + 0.2,
        [3, 3, 3, 1],
        id="float-rounding-allows-the-limit",
    ),
]


@pytest.mark.parametrize(("hosts", "capacities", "share", "expected"), CASES)
def test_capacity_batches(hosts, capacities, share, expected):
    batches = capacity_batches(hosts, capacities, share)

    assert batches == expected
    assert sum(batches) == len(hosts)


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("hosts", "capacities", "share", "message"),
    [
        (
            ["a"],
            {"a": 1},
            0,
            "capacity_batches: share must be a number above 0 and at most 1, got 0",
        ),
        (
            ["a"],
            {"a": 1},
            1.5,
            "capacity_batches: share must be a number above 0 and at most 1, got 1.5",
        ),
        (
            ["a"],
            {"a": 1},
            "a quarter",
            "capacity_batches: share must be a number above 0 and at most 1, got 'a quarter'",
        ),
        (
            ["a"],
            {"a": -2},
            0.5,
            "capacity_batches: the capacity of a must be an integer of 0 or more, got -2",
        ),
        (
            ["a"],
            {"a": 2.5},
            0.5,
            "capacity_batches: the capacity of a must be an integer of 0 or more, got 2.5",
        ),
        (
            ["a"],
            {"a": True},
            0.5,
            "capacity_batches: the capacity of a must be an integer of 0 or more, got True",
        ),
        (
            ["a", "x"],
            {"a": 1},
            0.5,
            "capacity_batches: x is to be updated but has no capacity; every host to update "
            "must be part of the fleet",
        ),
    ],
)
def test_capacity_batches_refuses(hosts, capacities, share, message):
    with pytest.raises(AnsibleFilterError) as caught:
        capacity_batches(hosts, capacities, share)

    assert caught.value.message == message


def test_the_filter_is_registered_under_its_name():
    assert FilterModule().filters() == {"capacity_batches": capacity_batches}
