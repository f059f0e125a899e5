# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start and stop one IVR service through the host's service manager.

Two managers: supervisord (the lab, and sites that run the product under it) through
supervisorctl, and systemd through systemctl. Both report a raw state that is mapped onto one
small vocabulary (running, starting, stopping, stopped, failed, unknown), so that playbooks read
the same result whichever manager a host uses. Windows services are not implemented.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import UpdaterError

POLL_INTERVAL = 0.5
STDERR_TAIL_LINES = 3

SUPERVISOR_STATES = {
    "RUNNING": "running",
    "STARTING": "starting",
    "BACKOFF": "starting",
    "STOPPING": "stopping",
    "STOPPED": "stopped",
    "EXITED": "stopped",
    "FATAL": "failed",
    "UNKNOWN": "unknown",
}
SYSTEMD_STATES = {
    "active": "running",
    "reloading": "running",
    "activating": "starting",
    "deactivating": "stopping",
    "inactive": "stopped",
    "failed": "failed",
}

# A unit in one of these is not running, so "stopped" needs no action.
NOT_RUNNING = ("stopped", "failed")


class ServiceError(UpdaterError):
    """A service could not be queried, started or stopped."""


def positive_pid(value):
    """A process ID given as text or number, or None when it is not a positive whole number."""
    text = str(value).strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def find_supervisorctl(configured=None, executable=None, which=shutil.which):
    """Return the supervisorctl to use: the option, the one beside Python, or the one on PATH.

    The one beside the running Python comes first because the lab installs supervisor into the
    same virtualenv that runs the modules, and PATH on a managed host rarely includes it.
    """
    if configured:
        return configured

    beside = os.path.join(os.path.dirname(executable or sys.executable), "supervisorctl")
    if os.access(beside, os.X_OK):
        return beside

    found = which("supervisorctl")
    if found:
        return found
    raise ServiceError(
        f"supervisorctl is neither beside {executable or sys.executable} nor on PATH; "
        "set the supervisorctl option",
        searched=beside,
    )


class Supervisor:
    """One program under supervisord, driven with `supervisorctl -c CONFIG`."""

    manager = "supervisord"
    states = SUPERVISOR_STATES
    # After a start, these mean the program will not come up on its own: waiting is pointless.
    gave_up = ("FATAL", "EXITED")

    def __init__(self, name, config, supervisorctl, run_command):
        self.name = name
        self.config = config
        self.supervisorctl = supervisorctl
        self.run_command = run_command

    def state(self):
        """Return the program's raw supervisord state, e.g. RUNNING."""
        rc, out, err = self._ctl("status")
        text = (out + err).strip()
        for line in text.splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == self.name and words[1] in SUPERVISOR_STATES:
                return words[1]

        raise self._error("status", rc, text)

    def pid(self):
        """The program's process ID, or None when supervisorctl names none (it does not run)."""
        _rc, out, err = self._ctl("status")
        for line in (out + err).splitlines():
            words = line.replace(",", " ").split()
            if words[:1] == [self.name] and "pid" in words[:-1]:
                return positive_pid(words[words.index("pid") + 1])
        return None

    def start(self):
        rc, out, err = self._ctl("start")
        self._check_answer("start", rc, out + err)

    def stop(self):
        rc, out, err = self._ctl("stop")
        self._check_answer("stop", rc, out + err)

    def failure_detail(self):
        """Return the last lines of the program's stderr log, else of its stdout log (where a
        program with redirect_stderr writes both), or None if supervisord has neither."""
        return self._tail("stderr") or self._tail("stdout")

    def _tail(self, stream):
        try:
            rc, out, _err = self._ctl("tail", stream)
        except ServiceError:
            return None

        lines = [line.strip() for line in out.splitlines() if line.strip()]
        if rc != 0 or not lines or lines[0].startswith(f"{self.name}: ERROR"):
            return None

        # A program that supervisord retried printed the same lines once per attempt; show
        # each line once, where it last appeared.
        distinct = list(dict.fromkeys(reversed(lines)))[::-1]
        return f"last {stream}: " + " | ".join(distinct[-STDERR_TAIL_LINES:])

    def _ctl(self, action, *extra):
        args = [self.supervisorctl, "-c", self.config, action, self.name, *extra]
        try:
            return self.run_command(args, handle_exceptions=False)
        except OSError as error:
            raise ServiceError(
                f"cannot run {self.supervisorctl} for {self.name}: {error.strerror or error}",
                service=self.name,
            ) from None

    def _check_answer(self, action, rc, text):
        # "spawn error" and "already started" are not failures here: the state poll that
        # follows decides, and names the state and the program's own last words.
        text = text.strip()
        if "ERROR (no such process)" in text or "ERROR (no such group)" in text:
            raise self._error(action, rc, text)
        if rc != 0 and f"{self.name}: " not in text:
            raise self._error(action, rc, text)

    def _error(self, action, rc, text):
        if "no such process" in text or "no such group" in text:
            cause = f"supervisord ({self.config}) has no program named {self.name}"
        elif "no such file" in text or "refused connection" in text:
            cause = (
                f"cannot reach supervisord with {self.config} to control {self.name} ({text}); "
                "is it running?"
            )
        else:
            # supervisorctl puts the cause on an "Error:" line and usage hints after it.
            lines = text.splitlines() or ["no output"]
            shown = next((line for line in lines if "error" in line.lower()), lines[-1])
            outcome = "answered without a known state" if action == "status" else "failed"
            cause = f"supervisorctl {action} {self.name} {outcome} (exit code {rc}: {shown})"
        return ServiceError(cause, service=self.name, config=self.config, rc=rc)


class Systemd:
    """One unit under systemd, driven with systemctl."""

    manager = "systemd"
    states = SYSTEMD_STATES
    gave_up = ("failed",)

    def __init__(self, name, systemctl, run_command):
        self.name = name
        self.systemctl = systemctl
        self.run_command = run_command

    def state(self):
        """Return the unit's raw is-active answer, e.g. active."""
        _rc, out, err = self._ctl("is-active")
        words = out.split()
        if words:
            return words[0]
        raise ServiceError(
            f"systemctl is-active {self.name} gave no answer ({err.strip() or 'no output'})",
            service=self.name,
        )

    def start(self):
        self._act("start")

    def stop(self):
        self._act("stop")

    def pid(self):
        """The unit's main process ID, or None when it has none."""
        _rc, out, _err = self.run_command(
            [self.systemctl, "show", "--property=MainPID", "--value", self.name],
            environ_update={"LC_ALL": "C"},
        )
        return positive_pid(out)

    def failure_detail(self):
        return f"see journalctl -u {self.name}"

    def _act(self, action):
        rc, out, err = self._ctl(action)
        if rc != 0:
            shown = (err or out).strip().splitlines()[-1:] or ["no output"]
            raise ServiceError(
                f"systemctl {action} {self.name} failed with exit code {rc} ({shown[0]}); "
                f"see journalctl -u {self.name}",
                service=self.name,
                rc=rc,
            )

    def _ctl(self, action):
        args = [self.systemctl, action, self.name]
        try:
            return self.run_command(args, environ_update={"LC_ALL": "C"}, handle_exceptions=False)
        except OSError as error:
            raise ServiceError(
                f"cannot run {self.systemctl} for {self.name}: {error.strerror or error}",
                service=self.name,
            ) from None


class ServiceController:
    """Brings one service to started, stopped or restarted and says what it did."""

    def __init__(self, manager, timeout=30, clock=time.monotonic, sleep=time.sleep):
        self.manager = manager
        self.timeout = timeout
        self.clock = clock
        self.sleep = sleep

    def ensure(self, state, check_mode=False, current=None):
        """Return the module result for bringing the service to `state`.

        `current` is the manager's raw state when the caller has just read it: passing it saves
        one query, which matters between a stop and a start.
        """
        raw = current if current is not None else self.manager.state()
        before = self.manager.states.get(raw, "unknown")
        unit = f"{self.manager.name} under {self.manager.manager}"
        needed = {
            "started": before != "running",
            "stopped": before not in NOT_RUNNING,
            "restarted": True,
        }[state]
        if not needed:
            word = "running" if state == "started" else "stopped"
            return self._result(f"{unit} is already {word} ({raw})", False, before, before, raw)

        after = "stopped" if state == "stopped" else "running"
        verb = {"started": "start", "stopped": "stop", "restarted": "restart"}[state]
        if check_mode:
            text = f"{unit} would {verb} (now {raw}, check mode)"
            return self._result(text, True, before, after, raw)

        if state != "started" and before not in NOT_RUNNING:
            self.manager.stop()
            raw = self._wait_until_stopped()
        if state != "stopped":
            self.manager.start()
            raw = self._wait_until_running()

        return self._result(f"{unit} {state} (was {before})", True, before, after, raw)

    def _wait_until_running(self):
        deadline = self.clock() + self.timeout
        while True:
            raw = self.manager.state()
            if self.manager.states.get(raw) == "running":
                return raw

            if raw in self.manager.gave_up:
                raise self._start_failed(f"it is {raw}", raw)
            if self.clock() >= deadline:
                raise self._start_failed(f"it is still {raw} after {self.timeout:g} s", raw)
            self.sleep(POLL_INTERVAL)

    def _wait_until_stopped(self):
        deadline = self.clock() + self.timeout
        while True:
            raw = self.manager.state()
            if self.manager.states.get(raw, "unknown") in NOT_RUNNING:
                return raw

            if self.clock() >= deadline:
                raise ServiceError(
                    f"{self.manager.name} under {self.manager.manager} did not stop; it is "
                    f"still {raw} after {self.timeout:g} s",
                    service=self.manager.name,
                    state=raw,
                )
            self.sleep(POLL_INTERVAL)

    def _start_failed(self, how, raw):
        cause = f"{self.manager.name} under {self.manager.manager} did not start; {how}"
        detail = self.manager.failure_detail()
        if detail:
            cause += f" ({detail})"
        return ServiceError(cause, service=self.manager.name, state=raw)

    def _result(self, msg, changed, before, after, raw):
        return {
            "changed": changed,
            "status": after,
            "previous_status": before,
            "manager_status": raw,
            "msg": msg,
        }
