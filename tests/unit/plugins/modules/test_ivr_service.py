# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ivr_service module against a real supervisord started from the venv in a temporary dir.

Steps go in the fixed order: check mode, real run, idempotent run, idempotent check mode, diff.
"""

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from ansible_collections.prairiefyre.updater.plugins.modules import ivr_service

VENV_BIN = Path(sys.executable).parent
CONFIG = """\
[unix_http_server]
file={dir}/supervisor.sock

[supervisord]
logfile={dir}/supervisord.log
pidfile={dir}/supervisord.pid
childlogdir={dir}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{dir}/supervisor.sock

[program:sleeper]
command={sleep} 300
autostart=false
startsecs=1
stopwaitsecs=5

[program:broken]
command=/bin/sh -c "echo loading version.txt >&2; echo refusing to start: BROKEN exists >&2; exit 3"
autostart=false
startsecs=1
startretries=0
"""


@pytest.fixture(scope="module")
def supervisor_config():
    """A supervisord of our own, in the foreground so that its PID is the one we started."""
    supervisord = VENV_BIN / "supervisord"
    if not supervisord.exists():
        pytest.skip(f"no supervisord in {VENV_BIN}")

    # A short directory under /tmp keeps the socket path within the unix socket length limit.
    directory = tempfile.mkdtemp(prefix="pf-sv-", dir="/tmp")
    config = Path(directory, "supervisord.conf")
    config.write_text(CONFIG.format(dir=directory, sleep=shutil.which("sleep")))
    process = subprocess.Popen(
        [str(supervisord), "-n", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_answering(config, process)
        yield str(config)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def _wait_until_answering(config, process):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        answer = subprocess.run(
            [str(VENV_BIN / "supervisorctl"), "-c", str(config), "status", "sleeper"],
            capture_output=True,
            text=True,
            check=False,
        )
        if "STOPPED" in answer.stdout:
            return
        if process.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail(f"supervisord did not come up with {config}")


def args_for(config, name, state, **options):
    return {
        "name": name,
        "state": state,
        "manager": "supervisord",
        "supervisor_config": config,
        **options,
    }


# -- documentation and argument spec agree ------------------------------------------------


def test_documentation_matches_the_argument_spec():
    documented = yaml.safe_load(ivr_service.DOCUMENTATION)["options"]
    spec = ivr_service.ARGUMENT_SPEC

    assert sorted(documented) == sorted(spec)
    for name, option in spec.items():
        for key in ("type", "default", "choices", "elements"):
            assert documented[name].get(key) == option.get(key), f"{name}: {key}"
        assert bool(documented[name].get("required")) == bool(option.get("required")), name


def test_documentation_parts_are_yaml():
    returned = yaml.safe_load(ivr_service.RETURN)

    assert yaml.safe_load(ivr_service.EXAMPLES)
    for name, doc in returned.items():
        assert {"description", "returned", "type", "sample"} <= set(doc), name


# -- a real supervisord -------------------------------------------------------------------

SLEEPER_STEPS = [
    # state, check_mode, diff, changed, status, previous_status, msg
    (
        "started",
        True,
        False,
        True,
        "running",
        "stopped",
        "sleeper under supervisord would start (now STOPPED, check mode)",
    ),
    (
        "started",
        False,
        False,
        True,
        "running",
        "stopped",
        "sleeper under supervisord started (was stopped)",
    ),
    (
        "started",
        False,
        False,
        False,
        "running",
        "running",
        "sleeper under supervisord is already running (RUNNING)",
    ),
    (
        "started",
        True,
        False,
        False,
        "running",
        "running",
        "sleeper under supervisord is already running (RUNNING)",
    ),
    (
        "restarted",
        False,
        False,
        True,
        "running",
        "running",
        "sleeper under supervisord restarted (was running)",
    ),
    (
        "stopped",
        True,
        True,
        True,
        "stopped",
        "running",
        "sleeper under supervisord would stop (now RUNNING, check mode)",
    ),
    (
        "stopped",
        False,
        True,
        True,
        "stopped",
        "running",
        "sleeper under supervisord stopped (was running)",
    ),
    (
        "stopped",
        False,
        False,
        False,
        "stopped",
        "stopped",
        "sleeper under supervisord is already stopped (STOPPED)",
    ),
    (
        "stopped",
        True,
        True,
        False,
        "stopped",
        "stopped",
        "sleeper under supervisord is already stopped (STOPPED)",
    ),
]


def test_sleeper_walks_through_its_states(supervisor_config, run_module):
    for state, check_mode, diff, changed, status, previous, msg in SLEEPER_STEPS:
        args = args_for(supervisor_config, "sleeper", state)

        result = run_module(ivr_service, args, check_mode=check_mode, diff=diff)

        step = f"{state} check_mode={check_mode}"
        assert result["failed"] is False, step
        assert (result["changed"], result["status"], result["previous_status"], result["msg"]) == (
            changed,
            status,
            previous,
            msg,
        ), step
        if diff:
            assert result["diff"] == {
                "before": {"status": previous},
                "after": {"status": status},
            }, step
        else:
            assert "diff" not in result, step


@pytest.mark.bad_input
def test_a_start_that_ends_in_fatal(supervisor_config, run_module):
    result = run_module(ivr_service, args_for(supervisor_config, "broken", "started"))

    assert (result["failed"], result["msg"]) == (
        True,
        "broken under supervisord did not start; it is FATAL (last stderr: loading version.txt "
        "| refusing to start: BROKEN exists)",
    )
    assert result["state"] == "FATAL"

    again = run_module(ivr_service, args_for(supervisor_config, "broken", "stopped"))
    assert (again["changed"], again["msg"]) == (
        False,
        "broken under supervisord is already stopped (FATAL)",
    )


@pytest.mark.bad_input
def test_unknown_program(supervisor_config, run_module):
    result = run_module(ivr_service, args_for(supervisor_config, "nope", "started"))

    assert result["msg"] == f"supervisord ({supervisor_config}) has no program named nope"


@pytest.mark.bad_input
def test_supervisord_not_running(tmp_path, run_module):
    config = tmp_path / "supervisord.conf"
    config.write_text(CONFIG.format(dir=tmp_path, sleep="/bin/sleep"))

    result = run_module(ivr_service, args_for(str(config), "sleeper", "stopped"))

    assert result["msg"] == (
        f"cannot reach supervisord with {config} to control sleeper "
        f"(unix://{tmp_path}/supervisor.sock no such file); is it running?"
    )


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (
            {"name": "sleeper", "state": "started", "manager": "supervisord"},
            "manager is supervisord but all of the following are missing: supervisor_config",
        ),
        (
            {"name": "sleeper", "state": "running", "manager": "systemd"},
            "value of state must be one of: started, stopped, restarted, got: running",
        ),
        ({"name": "sleeper", "state": "started"}, "missing required arguments: manager"),
    ],
)
@pytest.mark.bad_input
def test_option_rules_are_declared(run_module, args, msg):
    result = run_module(ivr_service, args)

    assert (result["failed"], result["msg"]) == (True, msg)


@pytest.mark.bad_input
def test_missing_supervisorctl(tmp_path, run_module):
    args = args_for(str(tmp_path / "x.conf"), "sleeper", "started")
    args["supervisorctl"] = str(tmp_path / "supervisorctl")

    result = run_module(ivr_service, args)

    assert result["msg"] == (
        f"cannot run {tmp_path / 'supervisorctl'} for sleeper: No such file or directory"
    )


@pytest.mark.bad_input
def test_systemd_without_systemctl(monkeypatch, run_module):
    monkeypatch.setattr(ivr_service.AnsibleModule, "get_bin_path", lambda *a, **k: None)

    result = run_module(
        ivr_service, {"name": "ivr.service", "state": "started", "manager": "systemd"}
    )

    assert result["msg"] == (
        "systemctl is not on this host's PATH, so ivr.service cannot be controlled with manager "
        "systemd"
    )
