#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: ivr_port_status
short_description: Ask an IVR service about its ports and take or release the update permission
version_added: 0.1.0
description:
  - Asks one IVR service (IVR Inbound, IVR Outbound or IVR UpIQ) how many of its telephone ports
    are busy, and takes or gives back the permission to stop it for an update.
  - O(action=request_permission) is granted only when every port is idle. The grant is a lease;
    until it is released or expires, the service takes no new call, so no call can arrive
    between the grant and the stop.
  - O(action=drain) makes the service take no new calls and is granted once the last call in
    progress ends, so the wait is bounded by the longest call instead of by luck. Without a grant
    by O(drain_deadline_seconds) the service takes calls again.
  - A refusal is not a failure; the module returns RV(granted=false), so a task can repeat with
    C(until), C(retries) and C(delay). O(wait_seconds) adds a short wait inside one attempt.
extends_documentation_fragment:
  - prairiefyre.updater.status_endpoint
  - ansible.builtin.action_common_attributes
options:
  service:
    description:
      - Name of the service, for example C(IVR Inbound).
      - Used in messages, and checked against the name the service reports, so that a wrong
        O(url) cannot grant the permission of another service.
    type: str
    required: true
  action:
    description:
      - V(query) reads the port state and changes nothing.
      - V(request_permission) asks for a lease, granted only when every port is idle.
      - V(drain) closes the service to new calls and is granted once every port is idle.
        Repeating it keeps the first deadline.
      - V(release) gives the lease back, or cancels a drain that has not been granted yet.
    type: str
    choices: [query, request_permission, drain, release]
    default: query
  lease_seconds:
    description:
      - How long a grant keeps the service closed to new calls if it is never released.
      - Choose it longer than stop, swap, start and the version check take together.
    type: int
    default: 900
  drain_deadline_seconds:
    description:
      - With O(action=drain), seconds after the first drain request after which the service
        gives up waiting for idle ports and takes calls again.
    type: int
    default: 1800
  wait_seconds:
    description:
      - With O(action=request_permission) or O(action=drain), repeat the request about every
        half second for up to this many seconds until it is granted.
      - V(0) asks once.
    type: int
    default: 0
  lease_id:
    description:
      - With O(action=release), the RV(lease_id) that the grant returned.
      - Omit it to cancel a drain that has not been granted yet, or, with O(record_dir), to
        give back what the record there holds.
    type: str
  record_dir:
    description:
      - A directory on the managed host in which the module keeps, per service, the lease it
        was granted or the drain it started (C(<record_dir>/ivr_inbound.json) for
        C(IVR Inbound)), so that a run cut off before it could release them leaves a trace
        the next run can act on.
      - With O(action=request_permission) or O(action=drain), a grant or a drain that goes on
        is written there; a drain whose deadline passed is forgotten.
      - With O(action=release), the record is removed once the lease or drain it names is given
        back. Without O(lease_id), the module gives back what the record holds (the lease, or
        the drain) and, when there is no record, only reads the service's state; it never
        cancels a drain or a lease that this collection did not record.
      - The role C(prairiefyre.updater.remote_ivr_update) uses
        C(<install_root>/.updater/leases), which M(prairiefyre.updater.manifest_compare)
        lists as RV(prairiefyre.updater.manifest_compare#module:leftover_leases).
    type: path
attributes:
  check_mode:
    support: full
    details:
      - V(request_permission) and V(drain) only read the status and report in RV(would_grant)
        whether the service would grant now; nothing is taken and no drain starts.
      - V(release) reports what it would release.
      - Nothing is written to or removed from O(record_dir).
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - The module changes something (C(changed=true)) only when it takes or releases a lease, or
    cancels a drain. A query and a refused request never change anything.
  - With O(command) the service cannot be closed to new calls. A "grant" only means that every
    port was idle when the command ran; there is no lease, so a call may start before the
    service stops, and O(action=drain) is the same as O(action=request_permission).
  - The short wait of O(wait_seconds) holds the task, and so the play, for up to that many
    seconds; keep it well below the C(delay) of the surrounding retries.
  - Supports POSIX managed hosts only; the Windows product's own status interface is not
    implemented.
seealso:
  - module: prairiefyre.updater.ivr_service
author:
  - prairiefyre.updater maintainers (@prairiefyre)
"""

EXAMPLES = r"""
- name: Show how busy IVR Inbound is
  prairiefyre.updater.ivr_port_status:
    service: IVR Inbound
    url: http://127.0.0.1:18610
  register: inbound

- name: Wait, polling every 10 minutes, for IVR Inbound to grant the update
  prairiefyre.updater.ivr_port_status:
    service: IVR Inbound
    url: http://127.0.0.1:18610
    action: request_permission
    lease_seconds: 900
    wait_seconds: 30
  register: result
  until: result.granted
  retries: 144
  delay: 600

- name: Drain IVR Outbound so the wait ends with its longest call
  prairiefyre.updater.ivr_port_status:
    service: IVR Outbound
    url: http://127.0.0.1:18611
    token: "{{ ivr_status_token }}"
    action: drain
    drain_deadline_seconds: 1800
    wait_seconds: 25
  register: drained
  until: drained.granted or drained.drain_expired
  retries: 60
  delay: 5

- name: Give the lease back once the service runs again
  prairiefyre.updater.ivr_port_status:
    service: IVR Outbound
    url: http://127.0.0.1:18611
    token: "{{ ivr_status_token }}"
    action: release
    lease_id: "{{ drained.lease_id }}"

- name: Give back a lease that a cut-off run left behind
  prairiefyre.updater.ivr_port_status:
    service: IVR Inbound
    url: http://127.0.0.1:18610
    action: release
    record_dir: /opt/prairiefyre/ivr/.updater/leases

- name: Ask a site script where the service has no status API
  prairiefyre.updater.ivr_port_status:
    service: IVR UpIQ
    command: [/usr/local/bin/ivr-ports, --format, lines]
    action: request_permission
  register: upiq
"""

RETURN = r"""
granted:
  description:
    - Whether the permission to update was granted by this run.
    - Always false for V(query), V(release) and in check mode.
  returned: always
  type: bool
  sample: true
would_grant:
  description: In check mode, whether the service would grant the permission now.
  returned: in check mode, with O(action=request_permission) or O(action=drain)
  type: bool
  sample: false
lease_id:
  description:
    - The lease that was granted, with O(action=release) the one given, and with
      O(action=query) the one the service holds now, so a caller can check that its grant
      still stands.
    - Null when there is none, always with O(command).
  returned: always
  type: str
  sample: 3f0c2a9e8b7d4c1e9a6f5b4d3c2e1f00
lease_expires_in:
  description:
    - Seconds until the lease of RV(lease_id) expires if it is not released.
  returned: always
  type: float
  sample: 900.0
drain_expired:
  description:
    - True when the drain's deadline passed before every port was idle; the service takes
      calls again. Only the first O(action=drain) after the deadline says so, and it starts no
      new drain.
    - A task that repeats O(action=drain) with C(until) should stop on it.
  returned: always
  type: bool
  sample: false
ports_busy:
  description: Number of ports in a call.
  returned: always
  type: int
  sample: 3
ports_total:
  description: Number of ports of the service.
  returned: always
  type: int
  sample: 16
busy_ports:
  description: Numbers of the ports in a call, in ascending order.
  returned: always
  type: list
  elements: int
  sample: [2, 5, 9]
longest_call_seconds:
  description: Length so far of the longest call in progress, null when there is none known.
  returned: always
  type: float
  sample: 95.5
version:
  description: Version the service reports it loaded at start; null if it does not say.
  returned: always
  type: str
  sample: 6.3.1.0
mode:
  description:
    - V(open) takes calls, V(leased) holds a grant, V(draining) waits for its calls to end.
    - Always V(open) with O(command) when the command does not say.
  returned: always
  type: str
  sample: draining
calls_dropped:
  description: Calls the service counts as cut off by a stop, when it reports them.
  returned: always
  type: int
  sample: 0
pid:
  description:
    - The process ID the service reports for itself, when it does. The update compares it with
      the process of the unit it stops, so that a status URL of another service cannot grant
      the stop of this one.
  returned: always
  type: int
  sample: 4242
calls_deferred:
  description:
    - Callers the service counts as turned away while it took no new call (leased or
      draining), when it reports them. A count since the service started; null when the
      service does not report it or the source is O(command).
  returned: always
  type: int
  sample: 3
record:
  description:
    - With O(record_dir), what the service's record holds after the run (a lease or a drain
      this update holds), or, with O(action=release), the record that was acted on and
      removed. Null when there is none.
  returned: when O(record_dir) is set
  type: dict
  sample:
    service: IVR Inbound
    kind: lease
    lease_id: 3f0c2a9e8b7d4c1e9a6f5b4d3c2e1f00
    url: http://127.0.0.1:18610
    recorded_at: 1796400000.25
    ends_at: 1796400900.25
msg:
  description: One sentence naming the service and what happened.
  returned: always
  type: str
  sample: "IVR Inbound: waiting, 3/16 ports busy (ports 2, 5, 9), longest call 95 s"
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import (  # noqa: E402
    UpdaterError,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils import leases  # noqa: E402
from ansible_collections.prairiefyre.updater.plugins.module_utils.status import (  # noqa: E402
    ENDPOINT_ARGUMENT_SPEC,
    ENDPOINT_MUTUALLY_EXCLUSIVE,
    ENDPOINT_REQUIRED_BY,
    ENDPOINT_REQUIRED_ONE_OF,
    StatusClient,
    make_source,
)

ARGUMENT_SPEC = {
    **ENDPOINT_ARGUMENT_SPEC,
    "service": {"type": "str", "required": True},
    "action": {
        "type": "str",
        "choices": ["query", "request_permission", "drain", "release"],
        "default": "query",
    },
    "lease_seconds": {"type": "int", "default": 900},
    "drain_deadline_seconds": {"type": "int", "default": 1800},
    "wait_seconds": {"type": "int", "default": 0},
    "lease_id": {"type": "str"},
    "record_dir": {"type": "path"},
}


def run(module):
    """Carry out the action the parameters ask for and return the module result."""
    params = module.params
    client = StatusClient(
        params["service"], make_source(params["service"], params, module.run_command)
    )
    action = params["action"]
    record_dir = params["record_dir"]
    lease_id = params["lease_id"]
    record = None
    if record_dir and action == "release":
        record = leases.read_record(record_dir, params["service"])
        if lease_id is None and record is None:
            # Without a record there is nothing of this collection's to give back, and a
            # release without a lease ID would cancel somebody else's drain.
            outcome = client.query()
            outcome.msg = f"{params['service']}: nothing to release, no lease or drain is recorded"
            if outcome.status.mode != "open":
                # Not this collection's to end, but the operator must know callers are refused.
                outcome.msg += f"; {_closed_by_others(outcome.status)}"
            return {**outcome.result(), "record": None}

        if lease_id is None:
            lease_id = record["lease_id"]

    if module.check_mode:
        result = client.preview(action, lease_id).result()
        if record_dir:
            # Check mode writes and removes no record: it shows the one there is.
            result["record"] = record or leases.read_record(record_dir, params["service"])
        return result

    if action == "request_permission":
        outcome = client.request_permission(params["lease_seconds"], params["wait_seconds"])
    elif action == "drain":
        outcome = client.drain(
            params["drain_deadline_seconds"], params["lease_seconds"], params["wait_seconds"]
        )
    elif action == "release":
        outcome = client.release(lease_id)
    else:
        outcome = client.query()
    result = outcome.result()
    if record_dir and action == "query":
        result["record"] = leases.read_record(record_dir, params["service"])
    elif record_dir:
        result["record"] = _keep_record(params, action, outcome, record, lease_id)
    return result


def _closed_by_others(status):
    """Why a service with nothing recorded takes no new calls, and until when."""
    if status.mode == "leased":
        text = f"the service is leased by someone else (lease {status.lease_id}"
        if status.lease_expires_in is not None:
            text += f", expires in {status.lease_expires_in:.0f} s"
        return text + ") and takes no new calls until then"
    text = f"the service is {status.mode}, started by someone else"
    if status.drain_deadline_in is not None:
        text += f", deadline in {status.drain_deadline_in:.0f} s"
    return text + ", and takes no new calls until it ends"


def _keep_record(params, action, outcome, record, lease_id):
    """Write or remove the service's record after the action; return the record in question."""
    directory, service = params["record_dir"], params["service"]
    if action == "release":
        # What was released, or what the service no longer holds, needs no release later. A
        # record of another lease stays: this run did not give that one back.
        if record is not None and record["lease_id"] in (None, lease_id):
            leases.remove_record(directory, service)
            return record
        return None

    if outcome.granted and outcome.lease_id:
        return leases.write_record(
            directory,
            service,
            "lease",
            params.get("url"),
            lease_id=outcome.lease_id,
            seconds=outcome.lease_expires_in,
        )

    if outcome.drain_expired:
        leases.remove_record(directory, service)
        return None

    if action == "drain" and outcome.status.mode == "draining":
        return leases.write_record(
            directory, service, "drain", params.get("url"), seconds=outcome.status.drain_deadline_in
        )

    return leases.read_record(directory, service)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=ENDPOINT_MUTUALLY_EXCLUSIVE,
        required_one_of=ENDPOINT_REQUIRED_ONE_OF,
        required_by=ENDPOINT_REQUIRED_BY,
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except UpdaterError as error:
        module.fail_json(msg=str(error), **error.context)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
