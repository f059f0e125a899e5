#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: updater_log_info
short_description: Read UpdaterService.log and report the last loaded PostTask
version_added: 0.1.0
description:
  - Reads one log file, or a Logs directory with C(UpdaterService.log) and its rotated files,
    and returns the last C(Loaded PostTask) line with its version and time.
  - In a directory the files are read oldest first - C(UpdaterService_<date>.log) by date,
    then C(UpdaterService.log.<n>) and C(UpdaterService.<n>.log) from the highest number down,
    then C(UpdaterService.log) - so the last PostTask is the newest.
  - Each file is decoded by its BOM (UTF-8, UTF-16 LE or BE); a file without one is read as
    UTF-8, line by line falling back on cp1252. CRLF, LF and a lone CR each end a line.
  - A BOM or NUL bytes at the start of a line are dropped, so a line after two joined logs or
    after the zeros a crash leaves in a Windows file is still read.
  - Time stamps may be C(M/D/YYYY h:mm:ss AM), C(YYYY-MM-DD HH:MM:SS(.fff)),
    C(DD.MM.YYYY HH:MM:SS) or ISO 8601 with an offset; lines without a level and a time stamp
    (stack traces, banners, garbage) are skipped and counted.
options:
  path:
    description: A log file or a Logs directory.
    type: path
    required: true
  since:
    description:
      - ISO 8601 time. When given, RV(post_task_after_since) says whether the last PostTask is
        at or after it.
      - A time with an offset or C(Z) is converted to the host's local time first, because the
        log holds local times.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module only reads.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Compressed rotated files (C(.gz), C(.zip)) are not read.
  - The order of rotated files comes from their names, not their modification times.
seealso:
  - module: prairiefyre.updater.updater_log
author:
  - prairiefyre.updater maintainers (@prairiefyre)
"""

EXAMPLES = r"""
- name: Read the updater log of an IVR host
  prairiefyre.updater.updater_log_info:
    path: /opt/prairiefyre/CCM/Logs
  register: updater_log

- name: Check that this run's update was logged
  prairiefyre.updater.updater_log_info:
    path: /opt/prairiefyre/CCM/Logs/UpdaterService.log
    since: "{{ run_started }}"
  register: updater_log
  failed_when: not updater_log.post_task_after_since
"""

RETURN = r"""
msg:
  description: One sentence naming the path and the last PostTask version.
  returned: always
  type: str
  sample: last PostTask in /opt/prairiefyre/CCM/Logs is version 6.3.2.0 at 2026-12-04T15:00:00
post_task:
  description: The last loaded PostTask, or null when the log has none.
  returned: always
  type: dict
  contains:
    version:
      description: The version after C(Version=); empty when the line has none.
      type: str
      sample: 6.3.2.0
    assembly:
      description: The assembly the line names.
      type: str
      sample: prairieFyre.Updater.Tasks
    timestamp:
      description: The line's time, ISO 8601 local time without an offset.
      type: str
      sample: "2026-12-04T15:00:00"
    line:
      description: The line as read, without its line break.
      type: str
      sample: "Info      12/4/2026 3:00:00 PM     Loaded PostTask: Assembly
        prairieFyre.Updater.Tasks, Version=6.3.2.0, Culture=neutral, PublicKeyToken=null"
    file:
      description: The file the line is in.
      type: str
      sample: /opt/prairiefyre/CCM/Logs/UpdaterService.log
  sample:
    version: 6.3.2.0
    assembly: prairieFyre.Updater.Tasks
    timestamp: "2026-12-04T15:00:00"
    line: "Info      12/4/2026 3:00:00 PM     Loaded PostTask: Assembly prairieFyre.Updater.Tasks,
      Version=6.3.2.0, Culture=neutral, PublicKeyToken=null"
    file: /opt/prairiefyre/CCM/Logs/UpdaterService.log
post_tasks:
  description: The last five PostTasks, oldest first, each like RV(post_task).
  returned: always
  type: list
  elements: dict
  sample: []
entries:
  description: How many log entries (lines with a level and a time stamp) were read.
  returned: always
  type: int
  sample: 412
skipped_lines:
  description: How many non-empty lines were not log entries.
  returned: always
  type: int
  sample: 3
files:
  description: The files read, oldest first.
  returned: always
  type: list
  elements: str
  sample:
    - /opt/prairiefyre/CCM/Logs/UpdaterService.log.1
    - /opt/prairiefyre/CCM/Logs/UpdaterService.log
post_task_after_since:
  description: True when the last PostTask is at or after O(since).
  returned: when O(since) is given
  type: bool
  sample: true
"""

import datetime  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.prairiefyre.updater.plugins.module_utils import (  # noqa: E402
    updater_log,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import (  # noqa: E402
    UpdaterError,
)

ARGUMENT_SPEC = {
    "path": {"type": "path", "required": True},
    "since": {"type": "str"},
}


def run(module):
    """Read the log and return the module result."""
    params = module.params
    since = params["since"] and updater_log.parse_iso(params["since"], "since")

    result = updater_log.read_log(params["path"])
    result["changed"] = False

    post_task = result["post_task"]
    if post_task is None:
        result["msg"] = f"no loaded PostTask in {params['path']}"
    else:
        result["msg"] = (
            f"last PostTask in {params['path']} is version {post_task['version'] or '(empty)'} "
            f"at {post_task['timestamp']}"
        )

    if since:
        result["post_task_after_since"] = post_task is not None and (
            datetime.datetime.fromisoformat(post_task["timestamp"]) >= since
        )
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
