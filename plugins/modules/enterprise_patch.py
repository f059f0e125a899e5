#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: enterprise_patch
short_description: Apply a patch bundle to the enterprise distribution and raise manifest IDs
version_added: 0.1.0
description:
  - Applies a patch bundle (a directory or a C(.tar.gz) of one, holding C(patch.json) and
    C(files/)) to the enterprise distribution directory O(dist_dir), which holds
    C(manifest.json) and C(packages/<module>/<manifest_id>/).
  - Every file of the bundle is checked against the size and sha256 in C(patch.json) before
    anything is written. Each patched module gets a new package with its complete file set (the
    files of its current package, minus the patch's C(remove), plus the patch's files) and a
    higher manifest ID; the manifest's C(serial) grows by one and the patch ID is added to its
    C(patches).
  - The packages are written first and the manifest last, atomically, so a reader sees the old
    or the new manifest and never a package that is missing files. A failure leaves O(dist_dir)
    as it was.
  - The first bundle applied to an empty O(dist_dir) creates the manifest (the base release).
  - A patch whose ID the manifest already lists is not applied again (C(changed=false)).
  - With O(signing_key), the manifest is signed (Ed25519) in C(<dist_dir>/manifest.json.sig).
    The signature file is written before the manifest and holds the signatures of the new and
    the previous manifest, so a host always finds the signature of the manifest it read. An
    applied patch whose manifest this key has not signed yet gets its signature
    (C(changed=true)).
options:
  dist_dir:
    description:
      - The enterprise distribution directory. It is created when missing.
    type: path
    required: true
  patch:
    description:
      - The patch bundle, a directory or a C(.tar.gz) file, on the managed node.
    type: path
    required: true
  signing_key:
    description:
      - Path, on the managed node, of the enterprise's Ed25519 private key in PEM (PKCS#8,
        C(-----BEGIN PRIVATE KEY-----)), as C(openssl genpkey -algorithm ed25519) writes it,
        without a passphrase. Keep it readable by its owner only.
      - Set, the new manifest is signed. Omitted while O(dist_dir) holds a signature file, a
        patch is refused, because every host that trusts the key would refuse the unsigned
        manifest.
      - The key itself never appears in the result or the log; only its key ID does.
    type: path
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - The bundle is verified and the new manifest computed; nothing in O(dist_dir) is written.
  diff_mode:
    support: full
    details:
      - The diff is the enterprise manifest before and after the patch.
  platform:
    platforms: posix
notes:
  - A patch cannot lower a module's manifest ID, give it the ID it has, or move it to another
    target directory. It may omit a module's C(manifest_id), which then becomes the current
    one plus one.
  - Applying a patch whose ID is already in the manifest fails when the bundle no longer matches
    what was applied; a changed bundle needs a new patch ID.
  - Old packages are kept; removing them is left to the site.
  - Two runs against one O(dist_dir) at the same time are refused by a lock file,
    C(<dist_dir>/.patch.lock).
  - A C(.tar.gz) bundle may hold only files and directories; links, devices and names that
    leave the bundle are refused.
  - A manifest that O(signing_key) signed before but that no longer matches its signature is
    not signed again; the task fails. A signature file by another key is replaced (a key
    rotation).
  - The key ID is the first 16 hex digits of the sha256 of the public key's DER, what
    C(openssl pkey -in KEY -pubout -outform DER | sha256sum | cut -c1-16) prints.
seealso:
  - module: prairiefyre.updater.manifest_compare
author:
  - prairiefyre.updater maintainers (@prairiefyre)
"""

EXAMPLES = r"""
- name: Apply the 6.3.2 sample patch to the enterprise
  prairiefyre.updater.enterprise_patch:
    dist_dir: /srv/prairiefyre/dist
    patch: /srv/prairiefyre/incoming/sample-6.3.2
  register: patched

- name: Show the new manifest IDs
  ansible.builtin.debug:
    msg: "{{ item.module }}: {{ item.old_id }} -> {{ item.new_id }}"
  loop: "{{ patched.modules }}"

- name: Apply a patch and sign the new manifest
  prairiefyre.updater.enterprise_patch:
    dist_dir: /srv/prairiefyre/dist
    patch: /srv/prairiefyre/incoming/sample-6.3.2
    signing_key: /etc/prairiefyre/enterprise.key

- name: Preview a packed bundle without writing anything
  prairiefyre.updater.enterprise_patch:
    dist_dir: /srv/prairiefyre/dist
    patch: /srv/prairiefyre/incoming/sample-6.3.2.tar.gz
  check_mode: true
  diff: true
"""

RETURN = r"""
msg:
  description: What the module did or would do, in one sentence.
  returned: always
  type: str
  sample: "Applied patch sample-6.3.2 to /srv/dist: ivr_inbound 1000 -> 1001; manifest serial 2."
patch_id:
  description: The ID of the patch, from its C(patch.json).
  returned: success
  type: str
  sample: sample-6.3.2
modules:
  description:
    - The modules the patch raises, in name order. Empty when the patch was applied before.
    - C(old_id) is null for a module the patch adds.
  returned: success
  type: list
  elements: dict
  sample:
    - module: ivr_inbound
      old_id: 1000
      new_id: 1001
    - module: ivr_upiq
      old_id: 3000
      new_id: 3001
manifest:
  description: The enterprise manifest once the patch is in (in check mode, as it would be).
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
serial:
  description: The C(serial) of RV(manifest).
  returned: success
  type: int
  sample: 2
signed:
  description: Whether this run wrote (in check mode, would write) a signature file.
  returned: success
  type: bool
  sample: true
key_id:
  description: The ID of O(signing_key), or null without one.
  returned: success
  type: str
  sample: 3f9a0c2b71d84e65
"""

import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.prairiefyre.updater.plugins.module_utils import signing  # noqa: E402
from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import (  # noqa: E402
    SignatureError,
    UpdaterError,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.fileio import dump_json  # noqa: E402
from ansible_collections.prairiefyre.updater.plugins.module_utils.patch import (  # noqa: E402
    MANIFEST_NAME,
    apply_patch,
)

ARGUMENT_SPEC = {
    "dist_dir": {"type": "path", "required": True},
    "patch": {"type": "path", "required": True},
    "signing_key": {"type": "path", "no_log": False},
}


def load_signing_key(path, warn=None):
    """Read the private key at path; warn when others may read it. Its content is never shown."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(64 * 1024)
        mode = os.stat(path).st_mode
    except OSError as error:
        raise SignatureError(
            f"signing_key {path}: cannot read it: {error.strerror}", path=path
        ) from None

    key = signing.SigningKey.from_pem(text, f"signing_key {path}")
    if warn and mode & 0o077:
        warn(f"signing_key {path} can be read by other users (mode {oct(mode & 0o777)}); chmod 600")
    return key


def run(params, check_mode, diff, warn=None):
    """The module's work on its validated options; returns the result dict."""
    dist_dir = params["dist_dir"]
    key = load_signing_key(params["signing_key"], warn) if params["signing_key"] else None
    outcome = apply_patch(dist_dir, params["patch"], check_mode=check_mode, signing_key=key)
    after = outcome["after"]
    result = {
        "changed": outcome["changed"],
        "patch_id": outcome["patch_id"],
        "modules": outcome["modules"],
        "manifest": after,
        "serial": after["serial"],
        "signed": outcome["signed"],
        "key_id": outcome["key_id"],
    }

    if not outcome["changed"]:
        result["msg"] = (
            f"Patch {outcome['patch_id']} is already applied to {dist_dir}; nothing changed."
        )
        return result

    if not outcome["modules"]:
        verb = "would sign" if check_mode else "signed"
        result["msg"] = (
            f"Patch {outcome['patch_id']} is already applied to {dist_dir}; {verb} its manifest "
            f"(serial {after['serial']}) with key {key.key_id}."
        )
        return result

    steps = ", ".join(
        f"{change['module']} {'new' if change['old_id'] is None else change['old_id']} -> "
        f"{change['new_id']}"
        for change in outcome["modules"]
    )
    verb = "Would apply" if check_mode else "Applied"
    signed = f", signed with key {key.key_id}" if outcome["signed"] else ""
    result["msg"] = (
        f"{verb} patch {outcome['patch_id']} to {dist_dir}: {steps}; manifest serial "
        f"{after['serial']}{signed}."
    )

    if diff:
        path = os.path.join(dist_dir, MANIFEST_NAME)
        result["diff"] = {
            "before_header": path,
            "after_header": path,
            "before": dump_json(outcome["before"]) if outcome["before"] else "",
            "after": dump_json(after),
        }
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = run(module.params, module.check_mode, module._diff, module.warn)
    except UpdaterError as error:
        module.fail_json(msg=str(error), **error.context)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
