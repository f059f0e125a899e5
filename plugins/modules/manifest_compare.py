#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: manifest_compare
short_description: Read the enterprise manifest and list the modules a host needs to update
version_added: 0.1.0
description:
  - Reads the enterprise manifest from a path or an http(s) URL (O(enterprise_src)), or takes
    one already read (O(enterprise_manifest)), and validates it against manifest format 1.
  - With O(local_manifest), compares it with the host's record and returns, per manifest
    module whose enterprise ID differs from the recorded one, what to install (RV(updates)) and
    the services that the update stops and starts (RV(services)).
  - A module whose enterprise ID is lower than the recorded one is a downgrade, and a manifest
    whose C(serial) is lower than the one the host recorded is a replay of an older manifest.
    Both fail the task unless O(allow_downgrade=true).
  - With O(public_key), the manifest must carry that key's Ed25519 signature in the signature
    file next to it (O(enterprise_src) plus C(.sig)). An unsigned manifest, one signed by
    another key and one changed after it was signed are refused before they are parsed.
  - Read-only. It never reports a change.
options:
  enterprise_src:
    description:
      - Where to read the enterprise manifest, a local path or an V(http://) or V(https://) URL,
        for instance V(http://127.0.0.1:18600/manifest.json).
    type: str
  enterprise_manifest:
    description:
      - The enterprise manifest as a dictionary, such as the RV(enterprise) a previous run of
        this module returned. It is validated again.
    type: dict
  local_manifest:
    description:
      - Path of the host's record, normally C(<install_root>/.updater/manifest.json).
      - A missing file means a host with nothing recorded, which needs every module.
      - The C(leases) directory next to it is where
        M(prairiefyre.updater.ivr_port_status) records the leases and drains an update holds;
        what is there is returned as RV(leftover_leases).
      - Omit it to only read and validate the enterprise manifest.
    type: path
  allow_downgrade:
    description:
      - Return a module whose enterprise ID is lower than the recorded one as an update instead
        of failing, and accept a manifest whose C(serial) is lower than the recorded one.
    type: bool
    default: false
  public_key:
    description:
      - The enterprise's Ed25519 public key, the PEM text (C(-----BEGIN PUBLIC KEY-----)) that
        C(openssl pkey -pubout) writes. Not a path.
      - Set, the manifest must be signed by this key (see the description). Needs
        O(enterprise_src), because a manifest given as O(enterprise_manifest) has no signature
        to check.
      - Omit it to accept an unsigned manifest.
    type: str
  modules:
    description:
      - Compare only these manifest modules. Each must be in the enterprise manifest.
      - Omit it, or give an empty list, to compare all of them.
    type: list
    elements: str
    default: []
  validate_certs:
    description:
      - Verify the TLS certificate of an V(https://) O(enterprise_src).
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for the enterprise to answer an http(s) O(enterprise_src).
    type: int
    default: 30
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - The module only reads, so check mode returns what a real run returns.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Run it once on the controller (C(run_once), C(delegate_to=localhost)) to read the enterprise,
    then on each host with O(enterprise_manifest) set to the RV(enterprise) of that run, so the
    enterprise is read once per play, not once per host.
  - A manifest larger than 16 MiB is refused.
  - A URL on a loopback address is never fetched through a proxy from the environment.
  - Modules in the host's record that the enterprise no longer lists are ignored.
  - The public key is not secret, but the option is still kept out of logs, like any key.
  - docs/manifest.md in the collection describes the signature file and how to make keys.
seealso:
  - module: prairiefyre.updater.enterprise_patch
author:
  - prairiefyre.updater maintainers (@prairiefyre)
"""

EXAMPLES = r"""
- name: Read and validate the enterprise manifest once for every host
  prairiefyre.updater.manifest_compare:
    enterprise_src: http://127.0.0.1:18600/manifest.json
  delegate_to: localhost
  run_once: true
  register: enterprise

- name: List the modules this host needs
  prairiefyre.updater.manifest_compare:
    enterprise_manifest: "{{ enterprise.enterprise }}"
    local_manifest: /opt/prairiefyre/.updater/manifest.json
  register: compare

- name: Show what would be updated
  ansible.builtin.debug:
    msg: "{{ item.module }} {{ item.old_id }} -> {{ item.new_id }} stops {{ item.services }}"
  loop: "{{ compare.updates }}"

- name: Read the enterprise manifest and refuse it unless the enterprise's key signed it
  prairiefyre.updater.manifest_compare:
    enterprise_src: http://127.0.0.1:18600/manifest.json
    public_key: "{{ lookup('ansible.builtin.file', 'files/enterprise.pub') }}"
  delegate_to: localhost
  run_once: true
  register: enterprise

- name: Compare only IVR Inbound's module and accept going back to an older build
  prairiefyre.updater.manifest_compare:
    enterprise_src: /srv/prairiefyre/dist/manifest.json
    local_manifest: /opt/prairiefyre/.updater/manifest.json
    modules:
      - ivr_inbound
    allow_downgrade: true
"""

RETURN = r"""
msg:
  description: What the module found, in one sentence.
  returned: always
  type: str
  sample: "2 modules need an update: ivr_inbound 1000 -> 1001, ivr_upiq 3000 -> 3001."
enterprise:
  description: The validated enterprise manifest (format 1, see docs/manifest.md).
  returned: success
  type: dict
  sample:
    format: 1
    serial: 2
    product_version: 6.3.2.0
    patches: [base-6.3.1, sample-6.3.2]
    modules:
      ivr_inbound:
        manifest_id: 1001
        version: 6.3.2.0
        target: IVR/Inbound
        services: [IVR Inbound]
        files:
          version.txt:
            size: 8
            sha256: 30bd666004b604c47a20fa3b071114632d4c3f7e05df1cc9d186cb17cf484412
updates:
  description:
    - One entry per module to update, in module name order.
    - C(old_id) and C(old_version) are null for a module the host has no record of.
  returned: success, when O(local_manifest) is set
  type: list
  elements: dict
  sample:
    - module: ivr_inbound
      old_id: 1000
      new_id: 1001
      old_version: 6.3.1.0
      new_version: 6.3.2.0
      target: IVR/Inbound
      services: [IVR Inbound]
      files:
        version.txt:
          size: 8
          sha256: 30bd666004b604c47a20fa3b071114632d4c3f7e05df1cc9d186cb17cf484412
services:
  description: The services that the updates stop and start, each once, in the product's order.
  returned: success, when O(local_manifest) is set
  type: list
  elements: str
  sample: [IVR Inbound, IVR UpIQ]
leftover_leases:
  description:
    - The leases and drains recorded in the C(leases) directory next to O(local_manifest),
      sorted by service. A run that finished gave them back; one left here was held by a run
      that was cut off, and its service takes no new calls until it is released or expires.
    - Each item is the record M(prairiefyre.updater.ivr_port_status) wrote, as its
      RV(prairiefyre.updater.ivr_port_status#module:record) describes.
  returned: success, when O(local_manifest) is set
  type: list
  elements: dict
  sample:
    - service: IVR Inbound
      kind: lease
      lease_id: 3f0c2a9e8b7d4c1e9a6f5b4d3c2e1f00
      url: http://127.0.0.1:18610
      recorded_at: 1796400000.25
      ends_at: 1796400900.25
up_to_date:
  description: True when no module needs an update.
  returned: success, when O(local_manifest) is set
  type: bool
  sample: false
signed_by:
  description:
    - The key ID (16 hex digits) of the O(public_key) whose signature was verified; null
      without O(public_key).
  returned: success
  type: str
  sample: 3f9a0c2b71d84e65
"""

import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.prairiefyre.updater.plugins.module_utils import leases  # noqa: E402
from ansible_collections.prairiefyre.updater.plugins.module_utils import manifest as mf  # noqa: E402
from ansible_collections.prairiefyre.updater.plugins.module_utils import signing  # noqa: E402
from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import UpdaterError  # noqa: E402

ARGUMENT_SPEC = {
    "enterprise_src": {"type": "str"},
    "enterprise_manifest": {"type": "dict"},
    "local_manifest": {"type": "path"},
    "allow_downgrade": {"type": "bool", "default": False},
    "modules": {"type": "list", "elements": "str", "default": []},
    "validate_certs": {"type": "bool", "default": True},
    "timeout": {"type": "int", "default": 30},
    "public_key": {"type": "str", "no_log": True},
}


def _describe(updates):
    steps = ", ".join(
        f"{update['module']} {'none' if update['old_id'] is None else update['old_id']} -> "
        f"{update['new_id']}"
        for update in updates
    )
    noun = "module needs" if len(updates) == 1 else "modules need"
    return f"{len(updates)} {noun} an update: {steps}."


def run(params):
    """The module's work on its validated options; returns the result dict."""
    key = None
    if params["enterprise_manifest"] is not None:
        enterprise = mf.parse_manifest(
            params["enterprise_manifest"], source="enterprise manifest (enterprise_manifest)"
        )
        label = "given as enterprise_manifest"
    else:
        if params["public_key"]:
            key = signing.VerifyKey.from_pem(params["public_key"], "public_key")
        fetch = mf.make_fetcher(params["validate_certs"], params["timeout"])
        enterprise = mf.load_manifest(params["enterprise_src"], fetch, key)
        label = params["enterprise_src"]
        if key is not None:
            label += f" (signed by key {key.key_id})"

    result = {"changed": False, "enterprise": enterprise, "signed_by": key.key_id if key else None}
    if not params["local_manifest"]:
        result["msg"] = (
            f"The enterprise manifest {label} is valid: serial {enterprise['serial']}, product "
            f"{enterprise['product_version']}, {len(enterprise['modules'])} modules."
        )
        return result

    record = mf.load_record(params["local_manifest"])
    updates = mf.compare(enterprise, record, params["allow_downgrade"], params["modules"])
    result.update(updates=updates, services=mf.services_of(updates), up_to_date=not updates)
    leftover = leases.list_records(
        os.path.join(os.path.dirname(params["local_manifest"]), "leases")
    )
    result["leftover_leases"] = leftover
    if updates:
        result["msg"] = _describe(updates)
    else:
        result["msg"] = (
            f"The host is up to date with the enterprise manifest (serial {enterprise['serial']}, "
            f"product {enterprise['product_version']})."
        )
    if leftover:
        held = ", ".join(f"{record['kind']} on {record['service']}" for record in leftover)
        result["msg"] += f" A cut-off run left {held}."
    return result


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[("enterprise_src", "enterprise_manifest")],
        required_one_of=[("enterprise_src", "enterprise_manifest")],
        required_by={"public_key": "enterprise_src"},
        supports_check_mode=True,
    )
    try:
        result = run(module.params)
    except UpdaterError as error:
        module.fail_json(msg=str(error), **error.context)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
