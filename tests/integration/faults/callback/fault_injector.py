# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only callback that injects one fault at a task boundary of an ansible-playbook run.

test_faults.py enables it with ANSIBLE_CALLBACK_PLUGINS and ANSIBLE_CALLBACKS_ENABLED. It acts
once, when the task whose name ends with FAULT_TASK starts (FAULT_WHEN=start) or ends well
(FAULT_WHEN=end):

    FAULT_ACTION=freeze        write FAULT_FIRED and stop this (the controller's main) process
                               with SIGSTOP; the test kills the whole process tree
    FAULT_ACTION=kill_service  SIGKILL the service FAULT_PROGRAM of the supervisord of
                               FAULT_SUPERVISOR_CONF, wait until supervisord saw it die, write
                               FAULT_FIRED and let the run go on
"""

import os
import signal
import subprocess
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: fault_injector
type: aggregate
short_description: Test only; kills the run or a service at a task boundary
description: Used by tests/integration/test_faults.py; see the module docstring.
requirements: [enabled with ANSIBLE_CALLBACKS_ENABLED]
"""


def _ctl(*args):
    command = [
        os.environ["FAULT_SUPERVISORCTL"],
        "-c",
        os.environ["FAULT_SUPERVISOR_CONF"],
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()


def _kill_service():
    program = os.environ["FAULT_PROGRAM"]
    pid = int(_ctl("pid", program))
    os.kill(pid, signal.SIGKILL)

    deadline = time.monotonic() + 10
    while "RUNNING" in _ctl("status", program) and time.monotonic() < deadline:
        time.sleep(0.1)
    return f"killed service {program} pid {pid}"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "fault_injector"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._task = os.environ.get("FAULT_TASK", "")
        self._when = os.environ.get("FAULT_WHEN", "start")
        self._action = os.environ.get("FAULT_ACTION", "freeze")
        self._fired = os.environ.get("FAULT_FIRED", "")
        self._done = not (self._task and self._fired)

    def _matches(self, task):
        return not self._done and (task.get_name() or "").endswith(self._task)

    def _fire(self):
        self._done = True
        if self._action == "kill_service":
            what = _kill_service()
        else:
            what = f"{self._when} of task {self._task}"
        with open(self._fired, "w", encoding="utf-8") as handle:
            handle.write(what)

        if self._action == "freeze":
            os.kill(os.getpid(), signal.SIGSTOP)

    def v2_playbook_on_task_start(self, task, is_conditional):
        if self._when == "start" and self._matches(task):
            self._fire()

    def v2_runner_on_ok(self, result):
        if self._when == "end" and self._matches(result._task):
            self._fire()
