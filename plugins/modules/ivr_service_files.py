#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: ivr_service_files
short_description: Plan, stage, swap, roll back and commit the files of one IVR manifest module
version_added: 0.1.0
description:
  - Replaces the directory of one manifest module (O(target) under O(install_root)) with the
    module's files at a new manifest ID, in steps that keep the service's downtime to two
    renames and always leave a way back.
  - V(plan) compares the installed files with O(files) (size first, then a streamed sha256) and
    lists the files the controller must copy into RV(staging_dir). It changes nothing, except
    that it repairs a swap or rollback a crash interrupted (see the notes).
  - V(stage) completes the staging tree by hardlinking the unchanged installed files into it
    (copying where links cannot be made), checks that every staged file has the manifest's size
    and sha256 and that nothing else is staged, checks free space, and writes a marker
    C(<install_root>/.updater/staging/<module>-<manifest_id>.verified). Run it while the
    service still runs.
  - V(swap) moves the target to
    C(<install_root>/.updater/backup/<module>/<time>-<old manifest ID>/) and the verified
    staging tree into its place; on Linux C(renameat2) with C(RENAME_EXCHANGE) makes the new tree
    appear in a single step. It keeps the newest O(keep_backups) backups.
  - With O(services), V(swap) also stops those services first and starts them after, in the same
    run, so that the stop-to-start window holds the renames alone; every check happens before
    the first stop. Without O(services) the caller must stop the services before the swap.
  - V(rollback) puts the newest backup back and moves the tree it replaces to
    C(<install_root>/.updater/failed/<module>-<manifest_id>/).
  - V(commit) records O(manifest_id) and O(version) in the host record
    C(<install_root>/.updater/manifest.json) and removes the module's staging and markers up to
    that ID.
options:
  action:
    description: The step to run.
    type: str
    choices: [plan, stage, swap, rollback, commit]
    required: true
  module:
    description: The manifest module, for example C(ivr_inbound).
    type: str
    required: true
  install_root:
    description: The host's install root (the product's C([Install Directory])).
    type: path
    required: true
  target:
    description:
      - The module's directory relative to O(install_root), as the manifest gives it, for
        example C(IVR/Inbound).
    type: str
    required: true
  files:
    description:
      - The module's files from the enterprise manifest, a dict of relative path to
        C({size, sha256}).
      - Required with O(action=plan), O(action=stage) and O(action=swap).
      - With O(action=commit) the installed files are checked against it before the record is
        written.
    type: dict
  manifest_id:
    description:
      - The manifest ID being installed.
      - Required with every action but V(rollback). With V(rollback) it limits the rollback to
        the backup taken by the swap that installed this ID.
    type: int
  version:
    description:
      - The version the module's service reports with these files.
      - Required with O(action=commit); V(stage) stores it in the marker.
    type: str
  serial:
    description:
      - With O(action=commit), the C(serial) of the enterprise manifest the module comes from.
        It becomes the host record's serial; prairiefyre.updater.manifest_compare refuses a
        manifest with a lower one (an older manifest replayed).
      - Omitted, the recorded serial is kept.
    type: int
  keep_backups:
    description:
      - How many backups of the module V(swap) keeps, the one it takes included. At least 1.
    type: int
    default: 2
  services:
    description:
      - With O(action=swap), the units (supervisord programs or systemd units) of the module's
        services. When the target differs, the running ones stop, the files are swapped and all
        start. When it already matches, only those that do not run start (see O(restart)).
      - With O(action=commit), the record is written only while all of them run.
      - Ask each service for permission before; stopping cuts off the calls in progress.
    type: list
    elements: str
  expect_stopped:
    description:
      - Units of O(services) that gave no permission because they did not answer; the swap fails
        before stopping anything if the service manager says one of them runs.
    type: list
    elements: str
    default: []
  expect_pids:
    description:
      - With O(action=swap) and O(services), the process ID that answered each unit's status
        endpoint when it gave its permission, by unit. Before anything stops, each unit to
        stop must run that process or be its ancestor (a wrapper that started it, as far as
        C(/proc) shows); otherwise the swap fails and nothing is stopped, since the permission
        came from another service.
      - Units not named here are not checked.
    type: dict
    default: {}
  restart:
    description:
      - With O(services), restart the running ones even when the target already matches (they
        run older files than the installed ones).
    type: bool
    default: false
  manager:
    description: The service manager of O(services).
    type: str
    choices: [supervisord, systemd]
  supervisor_config:
    description: The supervisord configuration on the host; required with O(manager=supervisord).
    type: path
  supervisorctl:
    description:
      - The supervisorctl program to drive O(services) with.
      - Omitted, O(services) are driven over the XML-RPC socket that O(supervisor_config) names,
        which keeps the start of a supervisorctl process out of the downtime; without such a
        socket, the supervisorctl beside Python, then the one on E(PATH).
    type: path
  service_timeout:
    description: Seconds each stop and each start of O(services) may take.
    type: int
    default: 30
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Every action reports what it would do and touches nothing.
  diff_mode:
    support: partial
    details:
      - V(swap) returns the changed paths with their sha256 and size before and after.
      - In check mode V(swap) with O(services) also says which services would stop and start.
      - The other actions return no diff.
  platform:
    platforms: posix
notes:
  - Before its renames a swap or rollback writes C(<install_root>/.updater/journal/<module>.json).
    If the run dies between the renames, the next V(plan), V(stage), V(swap), V(rollback) or
    V(commit) finishes the step (or drops the journal when nothing had moved yet) and says so
    in RV(repaired). In check mode the repair is only reported.
  - Files of the target that the manifest does not list (RV(removed_files)) are not carried
    over; they stay in the backup.
  - Hardlinked files are shared between the backup and the new tree; a service that rewrites
    its own files in place would change the backup too.
  - Only the mode and, as root, the owner of directories are copied to the staging tree; file
    modes are whatever the copy that sent them set, or those of the linked installed file.
  - Symlinks in the staging tree are refused, and so are symlinks in the target that point
    outside O(install_root). The target and C(.updater) must be on one filesystem.
  - One run per module at a time holds C(<install_root>/.updater/locks/<module>.lock).
  - In check mode the steps before a step changed nothing, so V(stage) lists the files not yet
    sent in RV(missing_files), V(swap) reports the swap that would follow an unstaged tree and
    V(commit) records nothing and does not check the installed files.
  - Trees under C(.updater/failed/) are kept until removed by hand.
  - A failed V(swap) with O(services) returns RV(stopped), RV(swapped) and RV(backup) beside
    C(msg), so that a rescue knows whether to roll back. docs/safety.md describes the guarantees.
seealso:
  - module: prairiefyre.updater.manifest_compare
  - module: prairiefyre.updater.ivr_service
author:
  - prairiefyre.updater maintainers (@prairiefyre)
"""

EXAMPLES = r"""
- name: Plan the update of IVR Inbound
  prairiefyre.updater.ivr_service_files:
    action: plan
    module: ivr_inbound
    install_root: /opt/prairiefyre
    target: IVR/Inbound
    files: "{{ update.files }}"
    manifest_id: "{{ update.new_id }}"
  register: ivr_plan

- name: Send the files that differ into the staging directory
  ansible.builtin.copy:
    src: "{{ dist_dir }}/packages/ivr_inbound/{{ update.new_id }}/{{ item }}"
    dest: "{{ ivr_plan.staging_dir }}/{{ item }}"
    mode: "0644"
  loop: "{{ ivr_plan.changed_files }}"

- name: Complete and verify the staging tree
  prairiefyre.updater.ivr_service_files:
    action: stage
    module: ivr_inbound
    install_root: /opt/prairiefyre
    target: IVR/Inbound
    files: "{{ update.files }}"
    manifest_id: "{{ update.new_id }}"
    version: "{{ update.new_version }}"

- name: Stop IVR Inbound, swap the new files in and start it again
  prairiefyre.updater.ivr_service_files:
    action: swap
    module: ivr_inbound
    install_root: /opt/prairiefyre
    target: IVR/Inbound
    files: "{{ update.files }}"
    manifest_id: "{{ update.new_id }}"
    keep_backups: 3
    services: [prairiefyre-ivr-inbound]
    manager: systemd
  register: ivr_swap

- name: Roll back the swap of this manifest ID
  prairiefyre.updater.ivr_service_files:
    action: rollback
    module: ivr_inbound
    install_root: /opt/prairiefyre
    target: IVR/Inbound
    manifest_id: "{{ update.new_id }}"

- name: Record the new manifest ID
  prairiefyre.updater.ivr_service_files:
    action: commit
    module: ivr_inbound
    install_root: /opt/prairiefyre
    target: IVR/Inbound
    files: "{{ update.files }}"
    manifest_id: "{{ update.new_id }}"
    version: "{{ update.new_version }}"
"""

RETURN = r"""
msg:
  description: One sentence naming the module and what happened.
  returned: always
  type: str
  sample: "module ivr_inbound: 2 of 3 files differ in /opt/prairiefyre/IVR/Inbound, 2 to send
    (11 bytes), 1 to remove"
repaired:
  description: What the repair of an interrupted swap or rollback found and did, or null.
  returned: always
  type: str
  sample: "repaired an interrupted swap of module ivr_inbound that had moved the old tree aside;
    moved the new one into place"
changed_files:
  description:
    - With V(plan), the manifest paths the controller must send, sorted.
    - With V(swap), the manifest paths whose installed file is missing or different.
  returned: when action is plan or swap
  type: list
  elements: str
  sample: [version.txt, sub/new.bin]
removed_files:
  description: Installed paths under the target that the manifest does not list.
  returned: when action is plan or swap
  type: list
  elements: str
  sample: [old.cfg]
bytes_to_send:
  description: The total size of RV(changed_files).
  returned: when action is plan
  type: int
  sample: 11
up_to_date:
  description: True when the target holds exactly the manifest's files.
  returned: when action is plan
  type: bool
  sample: false
staging_dir:
  description: The staging tree of this module and manifest ID.
  returned: when action is plan or stage
  type: str
  sample: /opt/prairiefyre/.updater/staging/ivr_inbound-1001
marker:
  description: The marker V(stage) writes once every staged file is verified.
  returned: when action is stage
  type: str
  sample: /opt/prairiefyre/.updater/staging/ivr_inbound-1001.verified
linked_files:
  description: Paths V(stage) hardlinked from the installed tree (in check mode, would link).
  returned: when action is stage
  type: list
  elements: str
  sample: [Inbound.dll]
copied_files:
  description: Paths V(stage) copied from the installed tree because a hardlink failed.
  returned: when action is stage
  type: list
  elements: str
  sample: []
missing_files:
  description:
    - Paths that are neither staged nor installed with the manifest's content. Only check mode
      lists them (the files a real run would have sent first); a real run fails on them.
  returned: when action is stage
  type: list
  elements: str
  sample: [version.txt]
verified_files:
  description: How many staged files V(stage) verified; 0 when the marker was still valid.
  returned: when action is stage
  type: int
  sample: 3
backup:
  description:
    - With V(swap), the backup a rollback of O(manifest_id) would restore; null when the target
      holds no tree that a swap to O(manifest_id) installed.
    - With V(rollback), the backup that was put back.
  returned: when action is swap or rollback
  type: str
  sample: /opt/prairiefyre/.updater/backup/ivr_inbound/20261204T150000123456Z-1000
failed_dir:
  description: Where V(rollback) moved the tree it replaced.
  returned: when action is rollback
  type: str
  sample: /opt/prairiefyre/.updater/failed/ivr_inbound-1001
restored_id:
  description: The manifest ID the restored backup held, or null when it was unknown.
  returned: when action is rollback
  type: int
  sample: 1000
stopped:
  description: The units V(swap) stopped (in check mode, would stop).
  returned: when action is swap and services are given
  type: list
  elements: str
  sample: [prairiefyre-ivr-inbound]
started:
  description: The units V(swap) started (in check mode, would start).
  returned: when action is swap and services are given
  type: list
  elements: str
  sample: [prairiefyre-ivr-inbound]
swapped:
  description: True when this run put the staged tree in place.
  returned: when action is swap and services are given
  type: bool
  sample: true
downtime_seconds:
  description: Seconds from the first stop until every service ran again; 0 when none stopped.
  returned: when action is swap and services are given
  type: float
  sample: 1.42
swap_seconds:
  description: Seconds the renames of the swap took, inside the downtime.
  returned: when action is swap and services are given
  type: float
  sample: 0.004
record:
  description: The host record V(commit) wrote or found up to date.
  returned: when action is commit
  type: str
  sample: /opt/prairiefyre/.updater/manifest.json
removed_staging:
  description: Staging trees and markers V(commit) removed (in check mode, would remove).
  returned: when action is commit
  type: list
  elements: str
  sample: [/opt/prairiefyre/.updater/staging/ivr_inbound-1001.verified]
"""

import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.prairiefyre.updater.plugins.module_utils import (  # noqa: E402
    compare,
    staging,
    swap,
    tree,
    window,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import (  # noqa: E402
    UpdaterError,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.service import (  # noqa: E402
    positive_pid,
)

ARGUMENT_SPEC = {
    "action": {
        "type": "str",
        "required": True,
        "choices": ["plan", "stage", "swap", "rollback", "commit"],
    },
    "module": {"type": "str", "required": True},
    "install_root": {"type": "path", "required": True},
    "target": {"type": "str", "required": True},
    "files": {"type": "dict"},
    "manifest_id": {"type": "int"},
    "version": {"type": "str"},
    "serial": {"type": "int"},
    "keep_backups": {"type": "int", "default": swap.DEFAULT_KEEP_BACKUPS},
    "services": {"type": "list", "elements": "str"},
    "expect_stopped": {"type": "list", "elements": "str", "default": []},
    "expect_pids": {"type": "dict", "default": {}},
    "restart": {"type": "bool", "default": False},
    "manager": {"type": "str", "choices": ["supervisord", "systemd"]},
    "supervisor_config": {"type": "path"},
    "supervisorctl": {"type": "path"},
    "service_timeout": {"type": "int", "default": 30},
}

REQUIRED_IF = [
    ("action", "plan", ["files", "manifest_id"]),
    ("action", "stage", ["files", "manifest_id"]),
    ("action", "swap", ["files", "manifest_id"]),
    ("action", "commit", ["manifest_id", "version"]),
    ("manager", "supervisord", ["supervisor_config"]),
]

REQUIRED_BY = {"services": ["manager"]}


def services_of(module):
    """A controller per unit of the services option, or None without it."""
    params = module.params
    if params["services"] is None:
        return None
    return window.controllers(
        params["services"],
        params["manager"],
        module.run_command,
        module.get_bin_path,
        supervisor_config=params["supervisor_config"],
        supervisorctl=params["supervisorctl"],
        timeout=params["service_timeout"],
    )


def expect_pids_of(module):
    """The expect_pids option with each value a positive integer, or the module fails."""
    pids = {}
    for unit, value in module.params["expect_pids"].items():
        pids[unit] = positive_pid(value)
        if pids[unit] is None:
            module.fail_json(
                msg=f"expect_pids: the process ID of {unit} must be a positive integer, got "
                f"{value!r}"
            )
    return pids


def act(module, layout):
    """Run the action asked for and return the module result."""
    params = module.params
    check = module.check_mode
    action = params["action"]
    expect_pids = expect_pids_of(module)
    if action == "plan":
        return compare.plan(layout, params["files"], check_mode=check)
    if action == "stage":
        return staging.stage(layout, params["files"], params["version"], check_mode=check)
    services = services_of(module)
    if action == "swap" and services is not None:
        return window.swap_services(
            layout,
            params["files"],
            services,
            keep_backups=params["keep_backups"],
            expect_stopped=params["expect_stopped"],
            expect_pids=expect_pids,
            restart=params["restart"],
            check_mode=check,
            want_diff=module._diff,
        )
    if action == "swap":
        return swap.swap(
            layout,
            params["files"],
            params["keep_backups"],
            check_mode=check,
            want_diff=module._diff,
        )
    if action == "rollback":
        return swap.rollback(layout, check_mode=check)
    if services is not None and not check:
        window.check_running(layout, services)
    return swap.commit(
        layout, params["version"], params["files"], check_mode=check, serial=params["serial"]
    )


def run(module):
    params = module.params
    layout = tree.Layout(
        params["install_root"], params["module"], params["target"], params["manifest_id"]
    )

    # Check mode moves nothing, and plan only reads unless it must repair an interrupted step.
    reads_only = params["action"] == "plan" and not os.path.exists(layout.journal)
    if module.check_mode or reads_only:
        return act(module, layout)
    with tree.module_lock(layout):
        return act(module, layout)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=REQUIRED_IF,
        required_by=REQUIRED_BY,
        supports_check_mode=True,
    )

    try:
        result = run(module)
    except UpdaterError as error:
        module.fail_json(msg=str(error), **error.context)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
