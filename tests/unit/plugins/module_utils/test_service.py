# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Service control: supervisorctl and systemctl answers, and the walk to the state asked for.

The managers here get scripted command output; test_ivr_service.py runs a real supervisord.
"""

import os

import pytest

from ansible_collections.prairiefyre.updater.plugins.module_utils import service as sv

CONF = "/etc/ivr/supervisord.conf"
CTL = "/venv/bin/supervisorctl"


class ScriptedRunner:
    """Stands in for AnsibleModule.run_command: replies per action word, the last one repeats."""

    def __init__(self, **replies):
        self.replies = {action: list(queue) for action, queue in replies.items()}
        self.calls = []

    def __call__(self, args, **kwargs):
        self.calls.append(args)
        action = args[3] if args[0] == CTL else args[1]
        queue = self.replies[action]
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(reply, Exception):
            raise reply
        return reply


def status_line(state, detail="pid 4242, uptime 0:00:05"):
    return (0 if state == "RUNNING" else 3, f"ivr01_inbound   {state}   {detail}\n", "")


class FakeTime:
    def __init__(self):
        self.now = 0.0

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def supervisor(runner):
    return sv.Supervisor("ivr01_inbound", CONF, CTL, runner)


def controller(manager, timeout=30):
    fake_time = FakeTime()
    return sv.ServiceController(manager, timeout, clock=fake_time.clock, sleep=fake_time.sleep)


# -- finding supervisorctl ----------------------------------------------------------------


def test_find_supervisorctl_prefers_the_option(tmp_path):
    assert sv.find_supervisorctl("/opt/sv/supervisorctl", str(tmp_path / "python")) == (
        "/opt/sv/supervisorctl"
    )


def test_find_supervisorctl_beside_python_before_path(tmp_path):
    beside = tmp_path / "supervisorctl"
    beside.write_text("#!/bin/sh\n")
    beside.chmod(0o755)

    found = sv.find_supervisorctl(None, str(tmp_path / "python"), which=lambda _: "/usr/bin/x")

    assert found == str(beside)


def test_find_supervisorctl_on_path(tmp_path):
    found = sv.find_supervisorctl(None, str(tmp_path / "python"), which=lambda _: "/usr/bin/sc")

    assert found == "/usr/bin/sc"


@pytest.mark.bad_input
def test_find_supervisorctl_nowhere(tmp_path):
    with pytest.raises(sv.ServiceError) as caught:
        sv.find_supervisorctl(None, str(tmp_path / "python"), which=lambda _: None)

    assert str(caught.value) == (
        f"supervisorctl is neither beside {tmp_path / 'python'} nor on PATH; "
        "set the supervisorctl option"
    )


# -- supervisorctl answers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "state"),
    [
        (status_line("RUNNING"), "RUNNING"),
        (status_line("STOPPED", "Not started"), "STOPPED"),
        (status_line("FATAL", "Exited too quickly (process log may have details)"), "FATAL"),
        (status_line("EXITED", "Dec 04 03:36 PM"), "EXITED"),
        (status_line("BACKOFF", "Exited too quickly"), "BACKOFF"),
        (status_line("STARTING"), "STARTING"),
        (status_line("STOPPING"), "STOPPING"),
    ],
)
def test_supervisor_state(reply, state):
    runner = ScriptedRunner(status=[reply])

    assert supervisor(runner).state() == state
    assert runner.calls == [[CTL, "-c", CONF, "status", "ivr01_inbound"]]


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            (4, "ivr01_inbound: ERROR (no such process)\n", ""),
            f"supervisord ({CONF}) has no program named ivr01_inbound",
        ),
        (
            (4, "unix:///srv/lab/supervisor.sock no such file\n", ""),
            f"cannot reach supervisord with {CONF} to control ivr01_inbound "
            "(unix:///srv/lab/supervisor.sock no such file); is it running?",
        ),
        (
            (4, "unix:///srv/lab/supervisor.sock refused connection\n", ""),
            f"cannot reach supervisord with {CONF} to control ivr01_inbound "
            "(unix:///srv/lab/supervisor.sock refused connection); is it running?",
        ),
        (
            (2, "", f"Error: could not find config file {CONF}\nFor help, use {CTL} -h\n"),
            "supervisorctl status ivr01_inbound answered without a known state "
            f"(exit code 2: Error: could not find config file {CONF})",
        ),
        (
            (0, "ivr01_outbound   RUNNING   pid 1\n", ""),
            "supervisorctl status ivr01_inbound answered without a known state "
            "(exit code 0: ivr01_outbound   RUNNING   pid 1)",
        ),
        (
            (0, "", ""),
            "supervisorctl status ivr01_inbound answered without a known state "
            "(exit code 0: no output)",
        ),
        (
            FileNotFoundError(2, "No such file or directory"),
            f"cannot run {CTL} for ivr01_inbound: No such file or directory",
        ),
    ],
)
@pytest.mark.bad_input
def test_supervisor_state_errors(reply, message):
    with pytest.raises(sv.ServiceError) as caught:
        supervisor(ScriptedRunner(status=[reply])).state()

    assert str(caught.value) == message


@pytest.mark.parametrize(
    "reply",
    [
        (0, "ivr01_inbound: started\n", ""),
        (0, "ivr01_inbound: ERROR (already started)\n", ""),
        # A spawn error is judged by the state poll that follows, which can name the cause.
        (7, "ivr01_inbound: ERROR (spawn error)\n", ""),
    ],
)
def test_supervisor_start_leaves_judgement_to_the_state(reply):
    supervisor(ScriptedRunner(start=[reply])).start()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            (1, "ivr01_inbound: ERROR (no such process)\n", ""),
            f"supervisord ({CONF}) has no program named ivr01_inbound",
        ),
        (
            (7, "unix:///s.sock refused connection\n", ""),
            f"cannot reach supervisord with {CONF} to control ivr01_inbound "
            "(unix:///s.sock refused connection); is it running?",
        ),
    ],
)
@pytest.mark.bad_input
def test_supervisor_stop_errors(reply, message):
    with pytest.raises(sv.ServiceError) as caught:
        supervisor(ScriptedRunner(stop=[reply])).stop()

    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("reply", "detail"),
    [
        ((0, "a\nb\n\nc\nboom\n", ""), "last stderr: b | c | boom"),
        ((0, "load\nboom\nload\nboom\nload\nboom\n", ""), "last stderr: load | boom"),
        ((0, "a\nb\nc\na\n", ""), "last stderr: b | c | a"),
        ((0, "\n", ""), None),
        ((0, "ivr01_inbound: ERROR (no log file)\n", ""), None),
        ((1, "", "ERROR"), None),
        (OSError(13, "Permission denied"), None),
    ],
)
def test_supervisor_failure_detail(reply, detail):
    runner = ScriptedRunner(tail=[reply])

    assert supervisor(runner).failure_detail() == detail
    assert runner.calls[0] == [CTL, "-c", CONF, "tail", "ivr01_inbound", "stderr"]


def test_supervisor_failure_detail_falls_back_to_stdout():
    # A program with redirect_stderr=true has no stderr log; its last words are in stdout.
    runner = ScriptedRunner(
        tail=[(0, "ivr01_inbound: ERROR (no log file)\n", ""), (0, "refusing to start\n", "")]
    )

    assert supervisor(runner).failure_detail() == "last stdout: refusing to start"
    assert [call[-1] for call in runner.calls] == ["stderr", "stdout"]


# -- systemctl answers --------------------------------------------------------------------


def systemd(runner):
    return sv.Systemd("ivr-inbound.service", "/usr/bin/systemctl", runner)


@pytest.mark.parametrize(
    ("reply", "state"),
    [
        ((0, "active\n", ""), "active"),
        ((3, "inactive\n", ""), "inactive"),
        ((3, "failed\n", ""), "failed"),
        ((3, "activating\n", ""), "activating"),
    ],
)
def test_systemd_state(reply, state):
    assert systemd(ScriptedRunner(**{"is-active": [reply]})).state() == state


@pytest.mark.parametrize(
    ("reply", "pid"),
    [
        (status_line("RUNNING"), 4242),
        (status_line("STOPPED", "Not started"), None),
        ((4, "ivr01_inbound: ERROR (no such process)\n", ""), None),
        # Another program's line does not answer for this one.
        ((0, "ivr01_inbound_old   RUNNING   pid 77, uptime 0:01:00\n", ""), None),
    ],
)
def test_supervisor_pid(reply, pid):
    assert supervisor(ScriptedRunner(status=[reply])).pid() == pid


@pytest.mark.parametrize(("out", "pid"), [("4242\n", 4242), ("0\n", None), ("", None)])
def test_systemd_pid(out, pid):
    runner = ScriptedRunner(show=[(0, out, "")])

    assert systemd(runner).pid() == pid
    assert runner.calls == [
        ["/usr/bin/systemctl", "show", "--property=MainPID", "--value", "ivr-inbound.service"]
    ]


@pytest.mark.bad_input
def test_systemd_errors():
    with pytest.raises(sv.ServiceError) as caught:
        systemd(ScriptedRunner(**{"is-active": [(1, "", "Failed to connect to bus\n")]})).state()
    assert str(caught.value) == (
        "systemctl is-active ivr-inbound.service gave no answer (Failed to connect to bus)"
    )

    with pytest.raises(sv.ServiceError) as caught:
        systemd(ScriptedRunner(start=[(5, "", "Unit ivr-inbound.service not found.\n")])).start()
    assert str(caught.value) == (
        "systemctl start ivr-inbound.service failed with exit code 5 "
        "(Unit ivr-inbound.service not found.); see journalctl -u ivr-inbound.service"
    )


# -- reaching the state -------------------------------------------------------------------


@pytest.mark.parametrize(
    # state, check_mode, status replies, result without msg, msg, actions run
    "case",
    [
        (
            "started",
            False,
            [status_line("RUNNING")],
            ("running", "running", False),
            "ivr01_inbound under supervisord is already running (RUNNING)",
            ["status"],
        ),
        (
            "stopped",
            False,
            [status_line("STOPPED")],
            ("stopped", "stopped", False),
            "ivr01_inbound under supervisord is already stopped (STOPPED)",
            ["status"],
        ),
        (
            "stopped",
            False,
            [status_line("FATAL")],
            ("failed", "failed", False),
            "ivr01_inbound under supervisord is already stopped (FATAL)",
            ["status"],
        ),
        (
            "started",
            True,
            [status_line("STOPPED")],
            ("running", "stopped", True),
            "ivr01_inbound under supervisord would start (now STOPPED, check mode)",
            ["status"],
        ),
        (
            "restarted",
            True,
            [status_line("RUNNING")],
            ("running", "running", True),
            "ivr01_inbound under supervisord would restart (now RUNNING, check mode)",
            ["status"],
        ),
        (
            "stopped",
            True,
            [status_line("RUNNING")],
            ("stopped", "running", True),
            "ivr01_inbound under supervisord would stop (now RUNNING, check mode)",
            ["status"],
        ),
        (
            "started",
            False,
            [status_line("STOPPED"), status_line("STARTING"), status_line("RUNNING")],
            ("running", "stopped", True),
            "ivr01_inbound under supervisord started (was stopped)",
            ["status", "start", "status", "status"],
        ),
        (
            "started",
            False,
            [status_line("FATAL"), status_line("RUNNING")],
            ("running", "failed", True),
            "ivr01_inbound under supervisord started (was failed)",
            ["status", "start", "status"],
        ),
        (
            "stopped",
            False,
            [status_line("RUNNING"), status_line("STOPPING"), status_line("STOPPED")],
            ("stopped", "running", True),
            "ivr01_inbound under supervisord stopped (was running)",
            ["status", "stop", "status", "status"],
        ),
        (
            "restarted",
            False,
            [status_line("RUNNING"), status_line("STOPPED"), status_line("RUNNING")],
            ("running", "running", True),
            "ivr01_inbound under supervisord restarted (was running)",
            ["status", "stop", "status", "start", "status"],
        ),
        (
            "restarted",
            False,
            [status_line("STOPPED"), status_line("RUNNING")],
            ("running", "stopped", True),
            "ivr01_inbound under supervisord restarted (was stopped)",
            ["status", "start", "status"],
        ),
    ],
)
def test_ensure(case):
    state, check_mode, statuses, (status, previous, changed), msg, actions = case
    runner = ScriptedRunner(
        status=statuses,
        start=[(0, "ivr01_inbound: started\n", "")],
        stop=[(0, "ivr01_inbound: stopped\n", "")],
    )

    result = controller(supervisor(runner)).ensure(state, check_mode)

    assert result == {
        "changed": changed,
        "status": status,
        "previous_status": previous,
        "manager_status": statuses[-1][1].split()[1],
        "msg": msg,
    }
    assert [call[3] for call in runner.calls] == actions


@pytest.mark.parametrize(
    ("statuses", "tail", "message"),
    [
        (
            [status_line("STOPPED"), status_line("FATAL", "Exited too quickly")],
            (0, "reading version.txt\nrefusing to start: BROKEN exists\n", ""),
            "ivr01_inbound under supervisord did not start; it is FATAL (last stderr: reading "
            "version.txt | refusing to start: BROKEN exists)",
        ),
        (
            [status_line("STOPPED"), status_line("EXITED", "Dec 04 03:36 PM")],
            (0, "", ""),
            "ivr01_inbound under supervisord did not start; it is EXITED",
        ),
        (
            [status_line("STOPPED"), status_line("BACKOFF", "Exited too quickly")],
            (0, "port 18610 in use\n", ""),
            "ivr01_inbound under supervisord did not start; it is still BACKOFF after 30 s "
            "(last stderr: port 18610 in use)",
        ),
        (
            [status_line("STOPPED"), status_line("STARTING")],
            (0, "", ""),
            "ivr01_inbound under supervisord did not start; it is still STARTING after 30 s",
        ),
    ],
)
@pytest.mark.bad_input
def test_start_failures_name_unit_state_and_stderr(statuses, tail, message):
    runner = ScriptedRunner(status=statuses, start=[(0, "", "")], tail=[tail])

    with pytest.raises(sv.ServiceError) as caught:
        controller(supervisor(runner)).ensure("started")

    assert str(caught.value) == message
    assert caught.value.context == {"service": "ivr01_inbound", "state": statuses[-1][1].split()[1]}


@pytest.mark.bad_input
def test_stop_that_hangs():
    runner = ScriptedRunner(
        status=[status_line("RUNNING"), status_line("STOPPING")], stop=[(0, "", "")]
    )

    with pytest.raises(sv.ServiceError) as caught:
        controller(supervisor(runner), timeout=5).ensure("stopped")

    assert str(caught.value) == (
        "ivr01_inbound under supervisord did not stop; it is still STOPPING after 5 s"
    )


@pytest.mark.parametrize(
    ("replies", "state", "expected"),
    [
        (
            {"is-active": [(3, "inactive\n", ""), (0, "active\n", "")], "start": [(0, "", "")]},
            "started",
            "ivr-inbound.service under systemd started (was stopped)",
        ),
        (
            {"is-active": [(0, "active\n", "")]},
            "started",
            "ivr-inbound.service under systemd is already running (active)",
        ),
        (
            {"is-active": [(0, "active\n", ""), (3, "inactive\n", "")], "stop": [(0, "", "")]},
            "stopped",
            "ivr-inbound.service under systemd stopped (was running)",
        ),
    ],
)
def test_ensure_with_systemd(replies, state, expected):
    result = controller(systemd(ScriptedRunner(**replies))).ensure(state)

    assert result["msg"] == expected


@pytest.mark.bad_input
def test_systemd_start_that_fails():
    replies = {"is-active": [(3, "inactive\n", ""), (3, "failed\n", "")], "start": [(0, "", "")]}

    with pytest.raises(sv.ServiceError) as caught:
        controller(systemd(ScriptedRunner(**replies))).ensure("started")

    assert str(caught.value) == (
        "ivr-inbound.service under systemd did not start; it is failed "
        "(see journalctl -u ivr-inbound.service)"
    )


def test_systemctl_runs_in_the_c_locale():
    calls = []

    def runner(args, **kwargs):
        calls.append((args, kwargs))
        return 0, "active\n", ""

    systemd(runner).state()

    assert calls == [
        (
            ["/usr/bin/systemctl", "is-active", "ivr-inbound.service"],
            {"environ_update": {"LC_ALL": "C"}, "handle_exceptions": False},
        )
    ]


def test_supervisorctl_beside_this_python_is_found():
    # The venv that runs the tests installs supervisor, so the default finds it without PATH.
    found = sv.find_supervisorctl(None, which=lambda _: None)

    assert os.path.basename(found) == "supervisorctl"
