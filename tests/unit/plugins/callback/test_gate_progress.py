# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gate_progress callback: which retries it shows, and the line it shows for them.

A real playbook run that waits on a busy lab service is in tests/integration/test_gate.py.
"""

import pytest

from ansible_collections.prairiefyre.updater.plugins.callback import gate_progress

WAITING_MSG = "IVR Inbound: still waiting after 5 s, 2/4 ports busy (ports 1, 3), longest call 14 s"


class Task:
    def __init__(self, action, delay, args=None):
        self.action = action
        self.delay = delay
        self.args = args or {}


class Host:
    def get_name(self):
        return "ivr01"


class Result:
    """The parts of a TaskResult the callback reads, under the names of ansible-core 2.19+."""

    def __init__(self, task, data):
        self.task = task
        self.host = Host()
        self.result = data


class Display:
    def __init__(self):
        self.lines = []

    def display(self, line):
        self.lines.append(line)


def poll(action="request_permission", **extra):
    data = {
        "msg": WAITING_MSG,
        "retries": 60,
        "attempts": 3,
        "invocation": {"module_args": {"service": "IVR Inbound", "action": action}},
    }
    data.update(extra)
    return data


@pytest.fixture
def shown():
    callback = gate_progress.CallbackModule()
    callback._display = Display()
    return callback


@pytest.mark.parametrize(
    ("task_action", "data", "delay", "lines"),
    [
        (
            "prairiefyre.updater.ivr_port_status",
            poll(),
            2.0,
            [f"WAITING [ivr01] {WAITING_MSG}; 57 polls left, next in 2 s"],
        ),
        (
            "ivr_port_status",
            poll("drain", msg="IVR Inbound: draining, no new calls; 1/4 ports busy (port 2)"),
            600,
            [
                "WAITING [ivr01] IVR Inbound: draining, no new calls; 1/4 ports busy (port 2); "
                "57 polls left, next in 600 s"
            ],
        ),
        (
            "prairiefyre.updater.ivr_port_status",
            poll(invocation=None, msg=None),
            1.5,
            ["WAITING [ivr01] no answer yet; 57 polls left, next in 1.5 s"],
        ),
        # A wait for the new version retries the same module, but it is no permission poll.
        ("prairiefyre.updater.ivr_port_status", poll("query"), 1, []),
        ("ansible.builtin.uri", poll(), 5, []),
    ],
)
def test_one_line_per_permission_poll(shown, task_action, data, delay, lines):
    shown.v2_runner_retry(Result(Task(task_action, delay), data))

    assert shown._display.lines == lines


@pytest.mark.parametrize(
    ("args", "lines"),
    [
        ({"action": "query"}, []),
        ({"action": "drain"}, [f"WAITING [ivr01] {WAITING_MSG}; 57 polls left, next in 1 s"]),
        ({"action": "{{ mode }}"}, [f"WAITING [ivr01] {WAITING_MSG}; 57 polls left, next in 1 s"]),
        ({}, [f"WAITING [ivr01] {WAITING_MSG}; 57 polls left, next in 1 s"]),
    ],
    ids=["version-check", "drain", "untemplated", "default-action"],
)
def test_a_looped_retry_without_invocation_is_told_by_the_task_args(shown, args, lines):
    # ansible-core drops the invocation from the retries of a looped task.
    task = Task("prairiefyre.updater.ivr_port_status", 1, args)

    shown.v2_runner_retry(Result(task, poll(invocation=None)))

    assert shown._display.lines == lines


def test_a_result_without_a_task_is_ignored(shown):
    shown.v2_runner_retry(Result(None, poll()))

    assert shown._display.lines == []
