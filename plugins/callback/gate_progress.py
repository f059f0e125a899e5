# Copyright: prairiefyre.updater contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: gate_progress
type: aggregate
short_description: Show what each wait for an IVR service's permission is waiting for
author: prairiefyre.updater maintainers (@prairiefyre)
description:
  - Ansible reports a retried task only as C(FAILED - RETRYING ... (N retries left)). While
    an update waits for an IVR service's permission, this callback adds one line per poll that
    names the host, the service, the busy ports out of the total, the longest call in progress,
    the polls left and the delay to the next one.
  - It acts only on retried C(prairiefyre.updater.ivr_port_status) tasks that request
    permission or drain (not, for example, on a wait for a version), and works beside any
    stdout callback.
  - "A line reads, for example: WAITING [ivr01] IVR Inbound: draining, no new calls; 3/16
    ports busy (ports 2, 5, 9), longest call 95 s; deadline in 1700 s; 41 polls left, next in
    5 s"
requirements:
  - Enable it in ansible.cfg with C(callbacks_enabled = prairiefyre.updater.gate_progress).
"""

from ansible.plugins.callback import CallbackBase

PORT_STATUS_ACTIONS = frozenset(("prairiefyre.updater.ivr_port_status", "ivr_port_status"))
GATE_ACTIONS = frozenset(("request_permission", "drain"))


def _parts(result):
    """Return (task, host name, result dict) for the callback result of any ansible-core."""
    task = getattr(result, "task", None) or getattr(result, "_task", None)
    host = getattr(result, "host", None) or getattr(result, "_host", None)
    data = getattr(result, "result", None)
    if not isinstance(data, dict):
        data = getattr(result, "_result", {})
    return task, host.get_name() if host is not None else "?", data


def is_gate_poll(data, task=None):
    """Whether a retried result asked for permission, not for example a version check."""
    # A retry's result carries no invocation when the task loops; the task's arguments, which
    # ansible-core has templated by then, say the same.
    args = (data.get("invocation") or {}).get("module_args") or getattr(task, "args", None)
    action = (args or {}).get("action", "request_permission")
    # Without either, or with an action still a template, the poll is shown rather than lost.
    return action in GATE_ACTIONS or "{{" in str(action)


def _seconds(value):
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


def progress_line(host, data, delay):
    """The line shown for one unanswered poll."""
    left = int(data.get("retries", 0)) - int(data.get("attempts", 0))
    msg = data.get("msg") or "no answer yet"
    return f"WAITING [{host}] {msg}; {left} polls left, next in {_seconds(delay)} s"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "prairiefyre.updater.gate_progress"
    CALLBACK_NEEDS_ENABLED = True

    def v2_runner_retry(self, result):
        task, host, data = _parts(result)
        if task is None or task.action not in PORT_STATUS_ACTIONS or not is_gate_poll(data, task):
            return

        self._display.display(progress_line(host, data, task.delay))
