# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: capacity_batches
short_description: Split the hosts to update into batches that hold at most a share of the fleet
version_added: 0.1.0
author: prairiefyre.updater maintainers (@prairiefyre)
description:
  - Takes the hosts that need an update, in the order the play will run them, and returns the
    sizes of consecutive batches for the play keyword C(serial), so that the IVR capacity of
    the hosts of one batch is at most O(share) of the capacity of the whole fleet.
  - A host's capacity is a number such as its IVR ports. The fleet is every host in
    O(capacities), including those that need no update.
  - Hosts are taken in order; a batch closes when the next host would take it over the
    limit. A host whose capacity alone is over the limit gets a batch of its own, since a host
    cannot be updated in parts. A host of capacity 0 joins whatever batch is open.
positional: capacities, share
options:
  _input:
    description: The hosts to update, in the play's order.
    type: list
    elements: str
    required: true
  capacities:
    description: Every host of the fleet mapped to its capacity, an integer of 0 or more.
    type: dict
    required: true
  share:
    description: The largest share of the fleet's capacity one batch may hold, above 0 and at
      most 1.
    type: float
    required: true
"""

EXAMPLES = r"""
- name: Plan batches of at most a quarter of the fleet's ports
  ansible.builtin.debug:
    msg: "{{ ['ivr01', 'ivr02', 'ivr03'] | prairiefyre.updater.capacity_batches(ports, 0.25) }}"
  vars:
    ports: {ivr01: 16, ivr02: 16, ivr03: 32, ivr04: 64}
  # -> [2, 1]: ivr01 + ivr02 hold 32 of 128 ports, ivr03 would make 64.
"""

RETURN = r"""
_value:
  description: The batch sizes in order; they add up to the number of hosts given. Empty when
    no host is given.
  type: list
  elements: int
"""

from ansible.errors import AnsibleFilterError

# A share times an integer total is compared as a float; this absorbs its rounding so that a
# batch of exactly the limit is allowed.
_EPSILON = 1e-9


def _share(value):
    try:
        share = float(value)
    except (TypeError, ValueError):
        share = None

    if share is None or not 0 < share <= 1:
        raise AnsibleFilterError(
            f"capacity_batches: share must be a number above 0 and at most 1, got {value!r}"
        )
    return share


def _capacity(host, value):
    try:
        # True would count as one port; a capacity is a count, not a switch.
        capacity = None if isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        capacity = None

    # Inventory values may be strings ("16") but never fractions of a port.
    if capacity is None or capacity < 0 or (capacity != value and str(capacity) != str(value)):
        raise AnsibleFilterError(
            f"capacity_batches: the capacity of {host} must be an integer of 0 or more, "
            f"got {value!r}"
        )
    return capacity


def capacity_batches(hosts, capacities, share):
    """Return the sizes of consecutive batches of ``hosts`` under ``share`` of the fleet."""
    limit = _share(share) * sum(_capacity(h, v) for h, v in dict(capacities).items())

    missing = [host for host in hosts if host not in capacities]
    if missing:
        raise AnsibleFilterError(
            f"capacity_batches: {missing[0]} is to be updated but has no capacity; every host "
            "to update must be part of the fleet"
        )

    batches = []
    size = load = 0
    for host in hosts:
        weight = _capacity(host, capacities[host])
        if size and load + weight > limit + _EPSILON:
            batches.append(size)
            size = load = 0
        size += 1
        load += weight

    if size:
        batches.append(size)
    return batches


class FilterModule:
    def filters(self):
        return {"capacity_batches": capacity_batches}
