# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of module_utils/window.py: stop, swap and start in one call, and its failures.

The services are fakes that keep their state in memory and note what the target held when they
were started, so a case can prove the order of stop, swap and start.
"""

import hashlib
import os

import pytest

from ansible_collections.prairiefyre.updater.plugins.module_utils import (
    compare,
    journal,
    service,
    staging,
    supervisor_rpc,
    swap,
    tree,
    window,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.tree import SwapError
from ansible_collections.prairiefyre.updater.tests.unit.helpers import read_tree, write_tree

OLD = {"version.txt": b"6.3.1.0\n", "Inbound.dll": b"dll-1", "old.cfg": b"cfg"}
NEW = {"version.txt": b"6.3.2.0\n", "Inbound.dll": b"dll-1", "lib/new.bin": b"new"}
FILES = {p: {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in NEW.items()}


class Crash(BaseException):
    """Stands for the process dying: nothing in the window catches it."""


class FakeManager:
    """A service manager with one unit, in memory; ``events`` is the log of every action."""

    manager = "fake"
    states = service.SUPERVISOR_STATES
    gave_up = ("FATAL", "EXITED")

    def __init__(self, name, events, target, raw="RUNNING", *, start_fails=False, pid=None):
        self.name = name
        self.events = events
        self.target = target
        self.raw = raw
        self.start_fails = start_fails
        self.process = pid

    def state(self):
        return self.raw

    def pid(self):
        return self.process if self.raw == "RUNNING" else None

    def stop(self):
        self.events.append(("stop", self.name))
        self.raw = "STOPPED"

    def start(self):
        with open(os.path.join(self.target, "version.txt"), "rb") as handle:
            self.events.append(("start", self.name, handle.read()))
        if isinstance(self.start_fails, BaseException):
            raise self.start_fails
        self.raw = "FATAL" if self.start_fails else "RUNNING"

    def failure_detail(self):
        return "last stderr: refusing to start"


@pytest.fixture(autouse=True)
def flushes(monkeypatch):
    """The filesystems flushed; syncfs on a busy test machine is slow and not the subject here."""
    flushed = []
    monkeypatch.setattr(window, "flush_filesystem", flushed.append)
    return flushed


def test_flush_filesystem_runs(tmp_path):
    journal.flush_filesystem(str(tmp_path))


@pytest.fixture
def layout(tmp_path):
    write_tree(str(tmp_path / "IVR" / "Inbound"), OLD)
    return tree.Layout(str(tmp_path), "ivr_inbound", "IVR/Inbound", 1001)


def staged(layout):
    planned = compare.plan(layout, FILES)
    write_tree(planned["staging_dir"], {path: NEW[path] for path in planned["changed_files"]})
    staging.stage(layout, FILES, "6.3.2.0")


def services(layout, events, *raws, **options):
    return [
        service.ServiceController(
            FakeManager(f"unit{i}", events, layout.target, raw, **options),
            timeout=5,
            sleep=lambda seconds: None,
        )
        for i, raw in enumerate(raws or ("RUNNING",))
    ]


def test_the_window_stops_swaps_and_starts(layout, flushes):
    staged(layout)
    events = []
    ticks = iter(range(100))

    result = window.swap_services(
        layout, FILES, services(layout, events, "RUNNING", "STOPPED"), clock=lambda: next(ticks)
    )

    assert events == [
        ("stop", "unit0"),
        ("start", "unit0", b"6.3.2.0\n"),
        ("start", "unit1", b"6.3.2.0\n"),
    ]
    assert (result["changed"], result["stopped"], result["started"]) == (
        True,
        ["unit0"],
        ["unit0", "unit1"],
    )
    assert (result["swapped"], result["backup"]) == (True, journal.list_backups(layout)[-1])
    assert result["downtime_seconds"] > 0
    assert result["msg"].endswith("; stopped unit0 and started unit0, unit1")
    assert read_tree(layout.target) == NEW
    assert not os.path.exists(layout.journal)
    assert journal.read_backup_meta(result["backup"])["new_id"] == 1001
    assert flushes == [layout.root]


@pytest.mark.parametrize(
    ("raw", "restart", "events", "changed"),
    [
        pytest.param("RUNNING", False, [], False, id="running-nothing-to-do"),
        pytest.param("EXITED", False, [("start", "unit0", b"6.3.2.0\n")], True, id="start-only"),
        pytest.param(
            "RUNNING",
            True,
            [("stop", "unit0"), ("start", "unit0", b"6.3.2.0\n")],
            True,
            id="restart-asked",
        ),
    ],
)
def test_a_target_that_already_matches(layout, raw, restart, events, changed):
    staged(layout)
    swap.swap(layout, FILES)
    seen = []

    result = window.swap_services(layout, FILES, services(layout, seen, raw), restart=restart)

    assert (seen, result["changed"], result["swapped"]) == (events, changed, False)
    # The tree in place came from the swap to this ID, so a rollback would restore its backup.
    assert result["backup"] == journal.list_backups(layout)[-1]


def test_check_mode_says_what_would_stop_and_touches_nothing(layout):
    staged(layout)
    events = []

    result = window.swap_services(
        layout, FILES, services(layout, events), check_mode=True, want_diff=True
    )

    assert events == []
    assert (result["stopped"], result["started"], result["changed"]) == (["unit0"], ["unit0"], True)
    assert result["msg"] == (
        f"module ivr_inbound: would replace 2 and remove 1 files in {layout.target}; would stop "
        "unit0; would start unit0"
    )
    assert "version.txt" in result["diff"]["after"]
    assert read_tree(layout.target) == OLD


def _unpermitted_runs(layout):
    return ["unit0"], "unit0 under fake is RUNNING but did not answer its status endpoint"


def _unknown_unit(layout):
    return ["other"], "expect_stopped names other, which is not one of the services unit0"


def _nothing_staged(layout):
    os.remove(layout.marker)
    return [], f"cannot swap module ivr_inbound: the marker {layout.marker} is missing"


@pytest.mark.bad_input
@pytest.mark.parametrize("case", [_unpermitted_runs, _unknown_unit, _nothing_staged])
def test_refusals_come_before_any_stop(layout, case):
    staged(layout)
    expect_stopped, message = case(layout)
    events = []

    with pytest.raises(SwapError) as caught:
        window.swap_services(layout, FILES, services(layout, events), expect_stopped=expect_stopped)

    assert message in str(caught.value)
    assert (events, read_tree(layout.target)) == ([], OLD)


@pytest.mark.parametrize(
    ("unit_pid", "answering", "stops"),
    [
        (os.getpid(), os.getpid(), True),
        # The endpoint runs in a child of the unit's process (a wrapper started it).
        (os.getppid(), os.getpid(), True),
        # The endpoint of another service: this unit's calls were never asked about.
        (os.getpid(), os.getppid(), False),
    ],
    ids=["same-process", "child-of-the-unit", "another-service"],
)
def test_a_unit_stops_only_when_its_own_endpoint_gave_the_permission(
    layout, unit_pid, answering, stops
):
    staged(layout)
    events = []
    units = services(layout, events, pid=unit_pid)

    if stops:
        result = window.swap_services(layout, FILES, units, expect_pids={"unit0": answering})
        assert result["stopped"] == ["unit0"]
        return

    with pytest.raises(SwapError) as caught:
        window.swap_services(layout, FILES, units, expect_pids={"unit0": answering})

    assert str(caught.value) == (
        f"unit0 under fake runs as process {unit_pid}, but the status endpoint that gave its "
        f"permission answers from process {answering}, which is not that process or one it "
        "started: the service's status URL and its unit name different services, and this "
        "unit's calls were never asked about; nothing was stopped"
    )
    assert (events, read_tree(layout.target)) == ([], OLD)


def test_a_failed_start_reports_the_swap_and_leaves_a_backup_to_roll_back(layout):
    staged(layout)
    events = []

    with pytest.raises(SwapError) as caught:
        window.swap_services(layout, FILES, services(layout, events, start_fails=True))

    context = caught.value.context
    assert (context["stopped"], context["started"], context["swapped"]) == (["unit0"], [], True)
    assert "unit0 under fake did not start; it is FATAL (last stderr: refusing" in str(caught.value)
    assert not os.path.exists(layout.journal)
    assert swap.rollback(layout)["backup"] == context["backup"]
    assert read_tree(layout.target) == OLD


def test_a_failed_stop_swaps_nothing(layout):
    staged(layout)
    controller = services(layout, [])[0]
    controller.manager.stop = lambda: None  # the unit never leaves RUNNING
    controller.clock = iter(range(0, 1000, 10)).__next__

    with pytest.raises(SwapError) as caught:
        window.swap_services(layout, FILES, [controller])

    assert (caught.value.context["swapped"], caught.value.context["backup"]) == (False, None)
    assert read_tree(layout.target) == OLD


def test_a_crash_between_the_renames_is_finished_by_the_next_call(layout, monkeypatch):
    staged(layout)
    real_move = journal.move

    def crash(src, dst):
        raise Crash()

    with monkeypatch.context() as patch:
        patch.setattr(journal, "move", crash)
        with pytest.raises(Crash):
            window.swap_services(layout, FILES, services(layout, []))
    assert journal.move is real_move and os.path.exists(layout.journal)
    events = []

    result = window.swap_services(layout, FILES, services(layout, events, "STOPPED"))

    assert result["repaired"].startswith("repaired an interrupted swap of module ivr_inbound")
    assert events == [("start", "unit0", b"6.3.2.0\n")]
    assert result["backup"] == journal.list_backups(layout)[-1]
    assert not os.path.exists(layout.journal)


def test_a_crash_before_the_start_leaves_a_journal_the_next_call_finishes(layout):
    staged(layout)

    with pytest.raises(Crash):
        window.swap_services(layout, FILES, services(layout, [], start_fails=Crash()))
    # The renames are done; the bookkeeping waited for the start that never came.
    assert read_tree(layout.target) == NEW and os.path.exists(layout.journal)

    result = window.swap_services(layout, FILES, services(layout, [], "STOPPED"))

    assert result["repaired"].endswith("had moved both trees")
    assert result["started"] == ["unit0"]
    assert journal.read_backup_meta(result["backup"])["new_id"] == 1001


@pytest.mark.parametrize(("raw", "fails"), [("RUNNING", False), ("EXITED", True)])
def test_check_running_before_a_record(layout, raw, fails):
    controllers = services(layout, [], raw)

    if fails:
        with pytest.raises(SwapError, match="unit0 under fake is EXITED, not running"):
            window.check_running(layout, controllers)
    else:
        window.check_running(layout, controllers)


class RecordingSupervisor:
    """supervisord's XML-RPC namespace in memory; notes each call and the version in place."""

    def __init__(self, target, calls):
        self.target = target
        self.calls = calls
        self.statename = "RUNNING"

    def getProcessInfo(self, name):  # noqa: N802 - supervisord's method name
        self.calls.append("getProcessInfo")
        return {"statename": self.statename, "pid": 4242 if self.statename == "RUNNING" else 0}

    def stopProcess(self, name, wait):  # noqa: N802
        self.calls.append(f"stopProcess wait={wait}")
        self.statename = "STOPPED"

    def startProcess(self, name, wait):  # noqa: N802
        with open(os.path.join(self.target, "version.txt"), "rb") as handle:
            self.calls.append(f"startProcess wait={wait} on {handle.read().strip().decode()}")
        self.statename = "RUNNING"


def test_over_xml_rpc_nothing_but_the_renames_sits_between_the_stop_and_the_start(layout):
    staged(layout)
    calls = []
    proxy = type("Proxy", (), {})()
    proxy.supervisor = RecordingSupervisor(layout.target, calls)
    unit = supervisor_rpc.SupervisorRPC("unit0", "/etc/sv.conf", "unix:///sv.sock", proxy)

    result = window.swap_services(
        layout, FILES, [service.ServiceController(unit, timeout=5, sleep=lambda s: None)]
    )

    assert calls == [
        "getProcessInfo",
        "stopProcess wait=True",
        "startProcess wait=False on 6.3.2.0",
        "getProcessInfo",
    ]
    assert (result["stopped"], result["started"], result["swapped"]) == (["unit0"], ["unit0"], True)


@pytest.mark.parametrize(("answering", "stops"), [(4242, True), (999999, False)])
def test_over_xml_rpc_the_units_process_is_read_before_its_stop(layout, answering, stops):
    staged(layout)
    calls = []
    proxy = type("Proxy", (), {})()
    proxy.supervisor = RecordingSupervisor(layout.target, calls)
    unit = supervisor_rpc.SupervisorRPC("unit0", "/etc/sv.conf", "unix:///sv.sock", proxy)
    units = [service.ServiceController(unit, timeout=5, sleep=lambda s: None)]

    if stops:
        window.swap_services(layout, FILES, units, expect_pids={"unit0": answering})
        assert calls[:3] == ["getProcessInfo", "getProcessInfo", "stopProcess wait=True"]
        return

    with pytest.raises(SwapError, match="unit0 under supervisord runs as process 4242, but"):
        window.swap_services(layout, FILES, units, expect_pids={"unit0": answering})
    assert calls == ["getProcessInfo", "getProcessInfo"]
