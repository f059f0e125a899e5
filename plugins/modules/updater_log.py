#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: updater_log
short_description: Write the PostTask line of a finished update to UpdaterService.log
version_added: 0.1.0
description:
  - "Appends the line the product's Updater Service writes once an update is complete, for
    example C(Info      2/8/2013 11:44:51 AM     Loaded PostTask: Assembly
    prairieFyre.Updater.Tasks, Version=6.3.2.0, Culture=neutral, PublicKeyToken=null)."
  - The level is padded to ten characters, the time is local and written as C(M/D/YYYY
    h:mm:ss AM) without leading zeros, five spaces separate it from the message.
  - The line goes in the file's own encoding (UTF-8 with or without a BOM, UTF-16 LE or BE
    with a BOM) and ends with CRLF. A missing file is created as UTF-8 with a BOM, its
    directory included.
  - Nothing is written when the last loaded PostTask in the file already names O(version)
    and, with O(since), is not older than O(since).
options:
  path:
    description:
      - The log file, usually C(<install_root>/CCM/Logs/UpdaterService.log).
      - A directory stands for the C(UpdaterService.log) inside it, and so does a path that does
        not exist yet and does not end in C(.log).
    type: path
    required: true
  version:
    description: The product version written after C(Version=).
    type: str
    required: true
  assembly:
    description: The assembly named in the line.
    type: str
    default: prairieFyre.Updater.Tasks
  level:
    description: The level field of the line.
    type: str
    choices: [Info, Warning, Error, Debug]
    default: Info
  timestamp:
    description:
      - The time written in the line, as ISO 8601 (for example C(2026-12-04T15:00:00)).
      - A time with an offset or C(Z) is converted to the host's local time; one without is
        taken as local time.
      - Default is the time of the run.
    type: str
  since:
    description:
      - ISO 8601 time. An existing PostTask line for O(version) counts only when it is not
        older than this, so a repeated update of the same version writes a new line.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports the line it would append and writes nothing.
  diff_mode:
    support: full
    details: The diff shows the line that is appended.
  platform:
    platforms: posix
notes:
  - The line is appended in place with one write, not by replacing the file, because the
    product's own service may hold the log open.
  - Only the given file is read for the idempotency check, not its rotated siblings.
  - A file without a BOM is written as UTF-8 unless it reads as UTF-16.
seealso:
  - module: prairiefyre.updater.updater_log_info
author:
  - prairiefyre.updater maintainers (@prairiefyre)
"""

EXAMPLES = r"""
- name: Write the PostTask line after the update
  prairiefyre.updater.updater_log:
    path: /opt/prairiefyre/CCM/Logs/UpdaterService.log
    version: 6.3.2.0

- name: Write it into the Logs directory with a fixed time, once per run
  prairiefyre.updater.updater_log:
    path: /opt/prairiefyre/CCM/Logs
    version: "{{ enterprise.product_version }}"
    timestamp: "2026-12-04T15:00:00Z"
    since: "{{ run_started }}"
"""

RETURN = r"""
msg:
  description: One sentence naming the file and what happened.
  returned: always
  type: str
  sample: "appended the PostTask line for version 6.3.2.0 to
    /opt/prairiefyre/CCM/Logs/UpdaterService.log"
path:
  description: The log file written or checked.
  returned: always
  type: str
  sample: /opt/prairiefyre/CCM/Logs/UpdaterService.log
line:
  description: The line appended (in check mode, the one that would be); when nothing changed,
    the existing line that already records the version.
  returned: always
  type: str
  sample: "Info      12/4/2026 3:00:00 PM     Loaded PostTask: Assembly prairieFyre.Updater.Tasks,
    Version=6.3.2.0, Culture=neutral, PublicKeyToken=null"
encoding:
  description: The file's encoding, one of V(utf-8-sig), V(utf-8), V(utf-16-le), V(utf-16-be).
  returned: always
  type: str
  sample: utf-8-sig
previous:
  description: The last loaded PostTask of the file before the run, or null.
  returned: always
  type: dict
  sample:
    version: 6.3.1.0
    assembly: prairieFyre.Updater.Tasks
    timestamp: "2026-11-02T09:12:40"
    line: "Info      11/2/2026 9:12:40 AM     Loaded PostTask: Assembly prairieFyre.Updater.Tasks,
      Version=6.3.1.0, Culture=neutral, PublicKeyToken=null"
    file: /opt/prairiefyre/CCM/Logs/UpdaterService.log
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.prairiefyre.updater.plugins.module_utils import (  # noqa: E402
    updater_log,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import (  # noqa: E402
    UpdaterError,
)

ARGUMENT_SPEC = {
    "path": {"type": "path", "required": True},
    "version": {"type": "str", "required": True},
    "assembly": {"type": "str", "default": updater_log.DEFAULT_ASSEMBLY},
    "level": {"type": "str", "default": "Info", "choices": list(updater_log.LEVELS)},
    "timestamp": {"type": "str"},
    "since": {"type": "str"},
}


def run(module):
    """Append the PostTask line when needed and return the module result."""
    params = module.params
    when = params["timestamp"] and updater_log.parse_iso(params["timestamp"], "timestamp")
    since = params["since"] and updater_log.parse_iso(params["since"], "since")

    result = updater_log.write_post_task(
        params["path"],
        params["version"],
        assembly=params["assembly"],
        level=params["level"],
        when=when or None,
        since=since or None,
        check=module.check_mode,
    )

    if not result["changed"]:
        result["msg"] = (
            f"{result['path']} already records the PostTask for version {params['version']}"
        )
        return result

    verb = "would append" if module.check_mode else "appended"
    result["msg"] = f"{verb} the PostTask line for version {params['version']} to {result['path']}"
    if module._diff:
        result["diff"] = {
            "before_header": result["path"],
            "after_header": result["path"],
            "before": "",
            "after": result["line"] + "\n",
        }
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)

    try:
        result = run(module)
    except UpdaterError as error:
        module.fail_json(msg=str(error), **error.context)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
