#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: ivr_service
short_description: Start, stop or restart an IVR service under supervisord or systemd
version_added: 0.1.0
description:
  - Brings one IVR service to the state asked for through the host's service manager, and waits
    up to O(timeout) seconds until the manager reports that state.
  - A start that ends with the program given up (supervisord C(FATAL) or C(EXITED), systemd
    C(failed)) or still not running at O(timeout) fails, naming the unit, its state and, under
    supervisord, the last lines of the program's stderr log.
  - Run it only after M(prairiefyre.updater.ivr_port_status) granted the permission;
    stopping a service cuts off every call in progress.
options:
  name:
    description:
      - The supervisord program (for example C(ivr01_inbound)) or the systemd unit (for example
        C(ivr-inbound.service)).
    type: str
    required: true
  state:
    description:
      - V(started) and V(stopped) act only when needed.
      - V(restarted) always stops (when running) and starts again.
    type: str
    choices: [started, stopped, restarted]
    required: true
  manager:
    description: The service manager that runs the service on the host.
    type: str
    choices: [supervisord, systemd]
    required: true
  supervisor_config:
    description:
      - Path of the supervisord configuration on the host, passed as C(supervisorctl -c).
      - Required with O(manager=supervisord).
    type: path
  supervisorctl:
    description:
      - Path of the supervisorctl program.
      - Default is the supervisorctl beside the Python that runs the module, then the one on
        E(PATH).
    type: path
  timeout:
    description: Seconds to wait for the service to reach the state.
    type: int
    default: 30
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the current state and reports the change it would make.
  diff_mode:
    support: full
    details: The diff shows the status before and after.
  platform:
    platforms: posix
notes:
  - Windows service control is not implemented; the module supports POSIX hosts only.
  - A state counts as stopped when the manager reports the service stopped, exited or failed.
  - Under systemd the module reports the failure state but does not read the journal; the
    message says which C(journalctl) command shows the cause.
seealso:
  - module: prairiefyre.updater.ivr_port_status
author:
  - prairiefyre.updater maintainers (@prairiefyre)
"""

EXAMPLES = r"""
- name: Stop IVR Inbound in the lab
  prairiefyre.updater.ivr_service:
    name: ivr01_inbound
    state: stopped
    manager: supervisord
    supervisor_config: /srv/lab/supervisord.conf

- name: Start IVR Inbound and wait up to a minute for it
  prairiefyre.updater.ivr_service:
    name: ivr01_inbound
    state: started
    manager: supervisord
    supervisor_config: /srv/lab/supervisord.conf
    timeout: 60

- name: Restart IVR Outbound on a systemd host
  prairiefyre.updater.ivr_service:
    name: ivr-outbound.service
    state: restarted
    manager: systemd
  become: true
"""

RETURN = r"""
status:
  description:
    - The service's status after the run, in the words of this module whatever the manager
      is; in check mode the status it would have.
    - One of V(running), V(starting), V(stopping), V(stopped), V(failed), V(unknown).
  returned: always
  type: str
  sample: running
previous_status:
  description: The service's status before the run, in the same words as RV(status).
  returned: always
  type: str
  sample: stopped
manager_status:
  description: The manager's own last word for the state, for example C(RUNNING) or C(active).
  returned: always
  type: str
  sample: RUNNING
msg:
  description: One sentence naming the unit and what happened.
  returned: always
  type: str
  sample: ivr01_inbound under supervisord started (was stopped)
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import (  # noqa: E402
    UpdaterError,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.service import (  # noqa: E402
    ServiceController,
    ServiceError,
    Supervisor,
    Systemd,
    find_supervisorctl,
)

ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True},
    "state": {"type": "str", "required": True, "choices": ["started", "stopped", "restarted"]},
    "manager": {"type": "str", "required": True, "choices": ["supervisord", "systemd"]},
    "supervisor_config": {"type": "path"},
    "supervisorctl": {"type": "path"},
    "timeout": {"type": "int", "default": 30},
}


def run(module):
    """Bring the service to the state asked for and return the module result."""
    params = module.params
    if params["manager"] == "supervisord":
        manager = Supervisor(
            params["name"],
            params["supervisor_config"],
            find_supervisorctl(params["supervisorctl"]),
            module.run_command,
        )
    else:
        systemctl = module.get_bin_path("systemctl")
        if not systemctl:
            raise ServiceError(
                f"systemctl is not on this host's PATH, so {params['name']} cannot be controlled "
                "with manager systemd",
                service=params["name"],
            )
        manager = Systemd(params["name"], systemctl, module.run_command)

    result = ServiceController(manager, timeout=params["timeout"]).ensure(
        params["state"], check_mode=module.check_mode
    )
    if module._diff:
        result["diff"] = {
            "before": {"status": result["previous_status"]},
            "after": {"status": result["status"]},
        }
    return result


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("manager", "supervisord", ("supervisor_config",))],
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except UpdaterError as error:
        module.fail_json(msg=str(error), **error.context)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
