"""The permission gate through the real playbooks, against labs of its own.

The default lab (4 ports, light load, real time) carries a pending update of IVR Inbound, and
the tests run in file order: settings that are refused, services that never go idle, a lease
held by someone else, an endpoint nobody answers, hosts that do not wait for each other, a
forced drain, a lease that runs out, and the leases a cut-off run leaves behind. Services are
held busy with the simulator's lab-only /admin/hold and let go with /admin/hangup. A second
lab, busy and time-compressed, takes many back-to-back permission, stop and start cycles and
must drop no call.
"""

import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SERVICES = ("inbound", "outbound", "upiq")
HOSTS = ("ivr01", "ivr02")
CYCLES = REPO / "tests" / "integration" / "playbooks" / "gate_cycles.yml"
# This module's own block of 100 ports above conftest's base (19000, or
# PRAIRIEFYRE_TEST_BASE_PORT) for its two labs, fixed so that a file added later never moves
# it; conftest's LAB_PORT_OFFSETS should reserve it. A lab of two hosts uses BASE .. BASE + 22.
GATE_PORT_OFFSET = 1700
BUSY_LAB_OFFSET = 50
# Lab settings of the busy lab: a real site's 16 ports at 40 % load, 300 times faster.
BUSY_LAB = ("--ports", "16", "--load", "0.4", "--mean-call", "180", "--time-scale", "300")
FAST_GATE = (
    "-e",
    "remote_ivr_update_permission_delay=1",
    "-e",
    "remote_ivr_update_drain_delay=1",
    "-e",
    "remote_ivr_update_permission_wait=1",
)
# ivr01 alone, asked twice (one retry) about a second apart.
IVR01_TWO_POLLS = (
    "-e",
    "update_ivr_hosts=ivr01",
    "-e",
    "remote_ivr_update_permission_retries=1",
    *FAST_GATE,
)


def flat(text):
    """The text with every run of whitespace as one space, as a wrapped message reads."""
    return " ".join(text.split())


def call(lab, host, service, path, body=None):
    """Send one request to a lab service's simulator and return its JSON answer."""
    index = int(host.removeprefix("ivr"))
    port = lab.base_port + 10 * index + SERVICES.index(service)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        headers={"Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.load(answer)


def hold(lab, host, service, seconds=3600):
    """Keep one port of the service busy; return its number."""
    return call(lab, host, service, "/admin/hold", {"ports": 1, "seconds": seconds})["held"][0]


def hang_up_all(lab, host, service):
    status = call(lab, host, service, "/status")
    busy = [port["port"] for port in status["ports"] if port["busy"]]
    if busy:
        call(lab, host, service, "/admin/hangup", {"ports": busy})


def make_patch(lab, directory, version, modules, services=None):
    """Write a patch bundle that bumps the given modules to version; return its directory."""
    manifest = lab.enterprise_manifest()
    patch = {"format": 1, "patch_id": f"gate-{version}", "product_version": version}
    patch["modules"] = {}
    for name in modules:
        files = directory / "files" / name
        files.mkdir(parents=True)
        (files / "version.txt").write_text(version + "\n", encoding="utf-8")
        entry = {"manifest_id": manifest["modules"][name]["manifest_id"] + 1, "version": version}
        if services and name in services:
            entry["services"] = services[name]
        patch["modules"][name] = {**entry, "files": {}}

    (directory / "patch.json").write_text(json.dumps(patch, indent=2), encoding="utf-8")
    tool = [sys.executable, str(REPO / "lab" / "make_bundle.py"), str(directory)]
    subprocess.run(tool, check=True, capture_output=True)
    return directory


def apply_patch(lab, bundle):
    rc, out, _recap = lab.playbook("apply_patch.yml", "-e", f"enterprise_patch_bundle={bundle}")
    assert rc == 0, out


@contextlib.contextmanager
def playbook_in_background(lab, log, *args):
    """Run update_ivr.yml while the test acts on the lab; its output goes to the file log."""
    cmd = ["ansible-playbook", "-i", str(REPO / "inventory" / "lab")]
    cmd += [str(REPO / "playbooks" / "update_ivr.yml"), *args]
    with open(log, "w", encoding="utf-8") as out:
        # A session of its own, so that the run and its workers can be ended together.
        run = subprocess.Popen(
            cmd, env=lab.env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield run
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGTERM)
            run.wait(timeout=60)


def wait_for(what, check, run, timeout=300):
    """Poll check() until it is true; fail naming what did not happen, or the run's end."""
    deadline = time.monotonic() + timeout
    while not check():
        assert run.poll() is None, f"the playbook ended before {what}"
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.25)


def inbound_id(lab, host):
    return lab.record(host)["modules"]["ivr_inbound"]["manifest_id"]


def assert_open(lab, host, service):
    status = call(lab, host, service, "/status")
    assert (status["mode"], status["accepting"], status["lease"], status["drain"]) == (
        "open",
        True,
        None,
        None,
    )


@pytest.fixture(scope="module")
def worker_base_port():
    return int(os.environ.get("PRAIRIEFYRE_TEST_BASE_PORT") or 19000) + GATE_PORT_OFFSET


@pytest.fixture(scope="module")
def pending(lab, tmp_path_factory):
    """The lab with IVR Inbound 6.3.3.0 on the enterprise, so every host has an update."""
    apply_patch(lab, make_patch(lab, tmp_path_factory.mktemp("patch"), "6.3.3.0", ["ivr_inbound"]))
    return lab


# -- settings that would make the gate meaningless ----------------------------------------------

REFUSED = {
    "remote_ivr_update_keep_backups=0": (
        "ivr01: remote_ivr_update_keep_backups is 0; it must be at least 1, or a version that "
        "does not start could not be rolled back."
    ),
    "remote_ivr_update_permission_retries=0": (
        "ivr01: remote_ivr_update_permission_retries is 0; it must be at least 1, or a service "
        "that is busy at the first poll could never grant the update."
    ),
    "remote_ivr_update_permission_delay=0": (
        "ivr01: remote_ivr_update_permission_delay is 0; it must be a positive number of seconds "
        "between two polls."
    ),
    "remote_ivr_update_permission_delay=-5": (
        "ivr01: remote_ivr_update_permission_delay is -5; it must be a positive number of "
        "seconds between two polls."
    ),
    "remote_ivr_update_drain_delay=0": (
        "ivr01: remote_ivr_update_drain_delay is 0; it must be a positive number of seconds "
        "between two polls."
    ),
    "remote_ivr_update_permission_wait=-1": (
        "ivr01: remote_ivr_update_permission_wait is -1; it must be 0 (ask once per poll) or "
        "more seconds."
    ),
    "remote_ivr_update_drain_deadline=0": (
        "ivr01: remote_ivr_update_drain_deadline is 0; it must be a positive number of seconds."
    ),
    "remote_ivr_update_lease_seconds=30": (
        "ivr01: remote_ivr_update_lease_seconds is 30; a lease must outlast a stop, swap and "
        "start, which may take longer than remote_ivr_update_start_timeout (60 s), so choose "
        "more than 60."
    ),
}


@pytest.fixture(scope="module")
def refused_runs(pending):
    """Every refused setting's run, started side by side: they only read until refused."""
    before = (pending.pids(), inbound_id(pending, "ivr01"))

    def run(setting):
        return pending.playbook("update_ivr.yml", "-e", "update_ivr_hosts=ivr01", "-e", setting)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        runs = dict(zip(REFUSED, pool.map(run, REFUSED)))
    return before, runs


@pytest.mark.bad_input
@pytest.mark.parametrize("setting", list(REFUSED))
def test_a_meaningless_gate_setting_is_refused_and_nothing_stops(pending, refused_runs, setting):
    before, runs = refused_runs
    rc, out, recap = runs[setting]

    assert rc != 0
    assert recap["ivr01"]["failed"] == 1, out
    assert REFUSED[setting] in flat(out), out
    assert (pending.pids(), inbound_id(pending, "ivr01")) == before


# -- a service that never goes idle ------------------------------------------------------------


@pytest.fixture
def held(pending):
    """ivr01's IVR Inbound with one port held busy for the test; the port's number."""
    port = hold(pending, "ivr01", "inbound")
    yield port
    hang_up_all(pending, "ivr01", "inbound")


@pytest.mark.parametrize(
    ("mode", "settings", "ending"),
    [
        (
            "request",
            ("-e", "remote_ivr_update_permission_retries=2"),
            r"IVR Inbound: still waiting after 1 s, {busy}, longest call \d+ s; no grant in 3 "
            r"polls, 1 s apart; nothing was stopped\.",
        ),
        (
            "drain",
            ("-e", "remote_ivr_update_permission_retries=2"),
            r"IVR Inbound: draining, no new calls; {busy}, longest call \d+ s; deadline in \d+ s; "
            r"no grant in 3 polls, 1 s apart; nothing was stopped\.",
        ),
        (
            "drain",
            ("-e", "remote_ivr_update_drain_deadline=3"),
            r"IVR Inbound: drain deadline passed with {busy}, longest call \d+ s; the service "
            r"takes calls again \(deadline 3 s\)\. Set remote_ivr_update_drain_force to true to "
            r"update anyway, dropping the calls still up; nothing was stopped\.",
        ),
    ],
    ids=["request-retries-run-out", "drain-retries-run-out", "drain-deadline-passes"],
)
def test_a_service_that_never_goes_idle_ends_the_wait_and_reopens(
    pending, held, mode, settings, ending
):
    before = (pending.pids(), inbound_id(pending, "ivr01"))

    rc, out, recap = pending.playbook(
        "update_ivr.yml",
        "-e",
        "update_ivr_hosts=ivr01",
        "-e",
        f"remote_ivr_update_permission_mode={mode}",
        *FAST_GATE,
        *settings,
    )

    assert rc != 0
    assert recap["ivr01"]["failed"] == 1, out
    # The held port, and any random call beside it, is named.
    busy = rf"\d/4 ports busy \(ports? [\d, ]*\b{held}\b[\d, ]*\)"
    assert re.search("ivr01: " + ending.format(busy=busy), flat(out)), out
    assert (pending.pids(), inbound_id(pending, "ivr01")) == before
    assert_open(pending, "ivr01", "inbound")


# -- a lease someone else holds, an endpoint nobody answers --------------------------------------


def take_lease(lab, host, service):
    """Take the service's lease as another updater would; return its id."""
    for _attempt in range(100):
        hang_up_all(lab, host, service)
        answer = call(lab, host, service, "/permission", {"lease_seconds": 600})
        if answer["granted"]:
            return answer["lease"]["id"]
        time.sleep(0.1)
    pytest.fail(f"{host} {service} never granted a lease to the test")


@pytest.mark.bad_input
def test_a_refused_lease_stops_nothing_and_leaves_the_other_lease_alone(pending):
    before = (pending.pids(), inbound_id(pending, "ivr01"))
    lease = take_lease(pending, "ivr01", "inbound")
    try:
        rc, out, recap = pending.playbook("update_ivr.yml", *IVR01_TWO_POLLS)
        still = call(pending, "ivr01", "inbound", "/status")["lease"]
    finally:
        call(pending, "ivr01", "inbound", "/release", {"lease_id": lease})

    assert rc != 0
    assert re.search(
        r"ivr01: IVR Inbound: still waiting after 1 s, already leased, lease expires in [\d.]+ "
        r"s; no grant in 2 polls, 1 s apart; nothing was stopped\.",
        flat(out),
    ), out
    assert still["id"] == lease
    assert (pending.pids(), inbound_id(pending, "ivr01")) == before


@pytest.mark.bad_input
def test_an_unreachable_status_endpoint_stops_nothing(pending, tmp_path):
    # A port that is bound but never listens refuses every connection, and stays ours.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        services = [
            {
                "name": name,
                "unit": f"{{{{ inventory_hostname }}}}_{suffix}",
                "status_url": f"http://127.0.0.1:{port}",
            }
            for name, suffix, port in (
                ("IVR Inbound", "inbound", closed.getsockname()[1]),
                ("IVR Outbound", "outbound", pending.base_port + 11),
                ("IVR UpIQ", "upiq", pending.base_port + 12),
            )
        ]
        extra = tmp_path / "services.json"
        extra.write_text(json.dumps({"remote_ivr_update_services": services}), encoding="utf-8")
        before = (pending.pids(), inbound_id(pending, "ivr01"))

        rc, out, recap = pending.playbook(
            "update_ivr.yml", "-e", "update_ivr_hosts=ivr01", "-e", f"@{extra}"
        )

    assert rc != 0
    assert recap["ivr01"]["failed"] == 1, out
    assert re.search(r"ivr01: [^\n]*IVR Inbound[^\n]*nothing was stopped", flat(out)), out
    assert (pending.pids(), inbound_id(pending, "ivr01")) == before
    assert_open(pending, "ivr01", "inbound")


# -- hosts do not wait for each other ------------------------------------------------------------


def test_a_busy_host_does_not_hold_back_the_others(pending, tmp_path):
    held_port = hold(pending, "ivr01", "inbound")
    old = inbound_id(pending, "ivr01")
    new = pending.enterprise_manifest()["modules"]["ivr_inbound"]["manifest_id"]
    before = pending.pids()
    log = tmp_path / "run.log"

    # What the operator sees at every retry: service, busy ports, longest call, polls left.
    waiting = re.compile(
        rf"^WAITING \[ivr01\] IVR Inbound: still waiting after 5 s, \d/4 ports busy "
        rf"\(ports? [\d, ]*\b{held_port}\b[\d, ]*\), longest call \d+ s; \d+ polls left, "
        rf"next in 2 s$",
        re.MULTILINE,
    )

    # Both hosts in one batch: the hosts of a batch must not wait for each other.
    with playbook_in_background(pending, log, "-e", "update_ivr_max_capacity_share=1") as run:
        wait_for("ivr02's update", lambda: inbound_id(pending, "ivr02") == new, run)
        # The call ends only after ivr01 has been refused once: a hang-up inside its first poll
        # would let it through without a retry and the test would prove nothing about waiting.
        wait_for(
            "ivr01's WAITING line", lambda: waiting.search(log.read_text(encoding="utf-8")), run
        )
        # ivr02 is done while ivr01 still waits, its service untouched.
        ivr01_then = (inbound_id(pending, "ivr01"), pending.pids()["ivr01_inbound"])
        hang_up_all(pending, "ivr01", "inbound")
        run.wait(timeout=300)
    out = log.read_text(encoding="utf-8")

    assert run.returncode == 0, out
    assert ivr01_then == (old, before["ivr01_inbound"])
    assert (inbound_id(pending, "ivr01"), inbound_id(pending, "ivr02")) == (new, new)
    dropped = {
        (host, service): call(pending, host, service, "/status")["calls_dropped"]
        for host in HOSTS
        for service in SERVICES
    }
    assert dropped == dict.fromkeys(dropped, 0)


# -- forcing an update past the drain deadline ---------------------------------------------------


def test_a_forced_drain_updates_and_counts_the_calls_it_dropped(pending, tmp_path):
    apply_patch(pending, make_patch(pending, tmp_path / "patch", "6.3.4.0", ["ivr_inbound"]))
    hold(pending, "ivr01", "inbound")

    rc, out, recap = pending.playbook(
        "update_ivr.yml",
        "-e",
        "update_ivr_hosts=ivr01",
        "-e",
        "remote_ivr_update_permission_mode=drain",
        "-e",
        # Long enough for the role to see the drain it starts again after the forced close,
        # on a busy 2-core machine too; the held call outlasts it.
        "remote_ivr_update_drain_deadline=15",
        "-e",
        "remote_ivr_update_drain_force=true",
        *FAST_GATE,
    )

    assert rc == 0, out
    status = call(pending, "ivr01", "inbound", "/status")
    assert (status["version"], status["mode"], status["accepting"]) == ("6.3.4.0", "open", True)
    assert status["calls_dropped"] >= 1
    report = json.loads((pending.dir / "reports" / "ivr01.json").read_text(encoding="utf-8"))
    inbound = [s for s in report["services"] if s["service"] == "IVR Inbound"]
    assert [s["calls_dropped"] for s in inbound] == [status["calls_dropped"]]
    # The drain turned callers away for 15 s; how many is up to the lab's random calls, but the
    # report and the summary must carry the count the service gave.
    away = inbound[0]["calls_turned_away"]
    assert isinstance(away, int) and away >= 0, inbound
    assert re.search(
        rf"ivr01 IVR Inbound: [^\n]*, {away} callers? turned away while it was closed", flat(out)
    ), out


# -- a lease that runs out while another service of the module is waited for ---------------------


def test_a_lease_that_ran_out_before_the_stop_stops_nothing(pending, tmp_path):
    # ivr_upiq now needs IVR UpIQ and IVR Outbound, asked in that order. Outbound stays busy
    # until UpIQ's short lease has run out; then Outbound grants, and the check before the
    # stop finds UpIQ's lease gone.
    bundle = make_patch(
        pending,
        tmp_path / "patch",
        "6.3.5.0",
        ["ivr_upiq"],
        services={"ivr_upiq": ["IVR UpIQ", "IVR Outbound"]},
    )
    apply_patch(pending, bundle)
    hold(pending, "ivr01", "outbound")
    before = pending.pids()
    log = tmp_path / "run.log"
    settings = [
        "-e",
        "remote_ivr_update_start_timeout=2",
        "-e",
        "remote_ivr_update_lease_seconds=3",
    ]

    with playbook_in_background(
        pending, log, "-e", "update_ivr_hosts=ivr01", *settings, *FAST_GATE
    ) as run:

        def upiq_mode():
            return call(pending, "ivr01", "upiq", "/status")["mode"]

        # The grant's record stays until the run gives the lease back, so a test that is slow
        # to look (a loaded machine) cannot miss a lease of 3 s, as it could the leased mode.
        record = lease_dir(pending, "ivr01") / "ivr_upiq.json"
        wait_for("IVR UpIQ's grant", record.exists, run)
        wait_for("the end of IVR UpIQ's lease", lambda: upiq_mode() == "open", run)
        hang_up_all(pending, "ivr01", "outbound")
        run.wait(timeout=300)
    out = log.read_text(encoding="utf-8")
    rc = run.returncode

    assert rc != 0
    assert re.search(
        r"ivr01: IVR UpIQ: the lease [0-9a-f]+ of the update is no longer held \(the service "
        r"is open, \d/4 ports busy\); a lease must outlast the wait for the other services of "
        r"the module: raise remote_ivr_update_lease_seconds;[^\n]* nothing was stopped\.",
        flat(out),
    ), out
    assert pending.pids() == before
    for service in ("upiq", "outbound"):
        assert_open(pending, "ivr01", service)


# -- what a cut-off run leaves behind -------------------------------------------------------------


def record_a_lease(lab, host, service):
    """Take a lease the way the role does, record and all, as a run cut off after its grant
    leaves it: the service closed to new calls for an hour, and the record on the host."""
    index = int(host.removeprefix("ivr"))
    args = {
        "service": {"inbound": "IVR Inbound", "outbound": "IVR Outbound", "upiq": "IVR UpIQ"}[
            service
        ],
        "url": f"http://127.0.0.1:{lab.base_port + 10 * index + SERVICES.index(service)}",
        "action": "request_permission",
        "lease_seconds": 3600,
        "wait_seconds": 30,
        "record_dir": str(lease_dir(lab, host)),
    }
    hang_up_all(lab, host, service)
    cmd = ["ansible", host, "-i", str(REPO / "inventory" / "lab")]
    cmd += ["-m", "prairiefyre.updater.ivr_port_status", "-a", json.dumps(args)]
    proc = subprocess.run(cmd, env=lab.env, cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lease = call(lab, host, service, "/status")["lease"]
    assert lease is not None, proc.stdout
    return lease["id"]


def lease_dir(lab, host):
    return lab.host_dir(host) / "install" / ".updater" / "leases"


def test_release_leases_gives_back_only_what_a_cut_off_run_recorded(pending):
    recorded = record_a_lease(pending, "ivr01", "inbound")
    others = take_lease(pending, "ivr01", "outbound")
    try:
        rc, out, recap = pending.playbook("release_leases.yml", "-e", "release_leases_hosts=ivr01")
        after = {s: call(pending, "ivr01", s, "/status") for s in ("inbound", "outbound")}
    finally:
        call(pending, "ivr01", "outbound", "/release", {"lease_id": others})

    assert rc == 0, out
    assert recap["ivr01"]["changed"] == 1, out
    said = flat(out)
    assert f"ivr01 IVR Inbound: released lease {recorded}; the service takes calls again" in said
    assert (
        "ivr01 IVR Outbound: nothing to release, no lease or drain is recorded; the service is "
        f"leased by someone else (lease {others}, expires in"
    ) in said, out
    assert (after["inbound"]["mode"], after["inbound"]["lease"]) == ("open", None)
    # Somebody else's lease, never recorded on the host, is left alone.
    assert after["outbound"]["lease"]["id"] == others
    assert list(lease_dir(pending, "ivr01").glob("*.json")) == []


def test_the_next_run_releases_a_lease_a_cut_off_run_left(pending, tmp_path):
    # ivr_upiq back to its own service alone, so that this update can finish. A lease of an
    # hour that nobody releases would hold every one of the 31 polls below off; the run must
    # release it. Once released, the service takes random calls again (a port is busy about
    # half the time), so two polls could both meet a call: 31 polls a second apart cannot.
    services = {"ivr_upiq": ["IVR UpIQ"]}
    apply_patch(pending, make_patch(pending, tmp_path / "patch", "6.3.6.0", ["ivr_upiq"], services))
    recorded = record_a_lease(pending, "ivr01", "upiq")
    new = pending.enterprise_manifest()["modules"]["ivr_upiq"]["manifest_id"]

    rc, out, recap = pending.playbook(
        "update_ivr.yml", *IVR01_TWO_POLLS, "-e", "remote_ivr_update_permission_retries=30"
    )

    assert rc == 0, out
    assert re.search(
        r"TASK \[prairiefyre\.updater\.remote_ivr_update : Release the leases and drains a "
        r"cut-off run left behind\] \*+\nchanged: \[ivr01\] => \(item=IVR UpIQ: lease " + recorded,
        out,
    ), out
    assert pending.record("ivr01")["modules"]["ivr_upiq"]["manifest_id"] == new
    assert list(lease_dir(pending, "ivr01").glob("*.json")) == []
    for service in SERVICES:
        assert_open(pending, "ivr01", service)


MISMATCHES = {
    # ivr01's IVR Inbound asked at ivr02's endpoint, as a status URL copied from the wrong host
    # would: ivr02 grants, but ivr01_inbound's own calls were never asked about.
    "status-url-of-another-host": (
        ("status_url", 20),
        r"ivr_inbound \(IVR Inbound\) was not updated to 6\.3\.\d\.0: "
        r"ivr01_inbound under supervisord runs as process \d+, but the status endpoint that gave "
        r"its permission answers from process \d+, which is not that process or one it started: "
        r"the service's status URL and its unit name different services, and this unit's calls "
        r"were never asked about; nothing was stopped\.",
    ),
    # A unit name with a typo: the cause must not be hidden by a start of that unit.
    "unit-typo": (
        ("unit", "ivr01_inbund"),
        r"ivr_inbound \(IVR Inbound\) was not updated to 6\.3\.\d\.0: [^;]*has no program "
        r"named ivr01_inbund; nothing was stopped\.",
    ),
}


@pytest.mark.bad_input
@pytest.mark.parametrize(("change", "said"), MISMATCHES.values(), ids=MISMATCHES.keys())
def test_a_unit_and_status_url_that_disagree_stop_nothing(pending, tmp_path, change, said):
    version = f"6.3.{7 + list(MISMATCHES.values()).index((change, said))}.0"
    apply_patch(pending, make_patch(pending, tmp_path / "patch", version, ["ivr_inbound"]))
    port = pending.base_port + 10
    inbound = {
        "name": "IVR Inbound",
        "unit": "ivr01_inbound",
        "status_url": f"http://127.0.0.1:{port}",
    }
    key, value = change
    # A status URL is given as its port's offset from the lab's base port.
    inbound[key] = f"http://127.0.0.1:{pending.base_port + value}" if key == "status_url" else value
    services = [
        inbound,
        {
            "name": "IVR Outbound",
            "unit": "ivr01_outbound",
            "status_url": f"http://127.0.0.1:{port + 1}",
        },
        {"name": "IVR UpIQ", "unit": "ivr01_upiq", "status_url": f"http://127.0.0.1:{port + 2}"},
    ]
    before = (pending.pids(), inbound_id(pending, "ivr01"))
    dropped = call(pending, "ivr01", "inbound", "/status")["calls_dropped"]

    rc, out, recap = pending.playbook(
        "update_ivr.yml",
        "-e",
        "update_ivr_hosts=ivr01",
        "-e",
        json.dumps({"remote_ivr_update_services": services}),
        *FAST_GATE,
    )

    assert rc != 0
    assert re.search(said, flat(out)), out
    assert (pending.pids(), inbound_id(pending, "ivr01")) == before
    assert call(pending, "ivr01", "inbound", "/status")["calls_dropped"] == dropped
    # Every lease the run was granted is given back.
    for host in ("ivr01", "ivr02"):
        assert_open(pending, host, "inbound")


def ivr01_vars(tmp_path, **settings):
    """A second inventory source that gives ivr01 alone these settings, over the lab's."""
    path = tmp_path / "ivr01.yml"
    hosts = {"ivr01": settings}
    path.write_text(json.dumps({"ivr_servers": {"hosts": hosts}}), encoding="utf-8")
    return ("-i", str(path))


@pytest.mark.bad_input
def test_one_hosts_bad_setting_fails_it_alone_and_the_others_update(pending, tmp_path):
    # Batches of one host each: a host failing in the serial update play would end the run
    # before ivr02's turn. The setting is refused in the check play instead.
    apply_patch(pending, make_patch(pending, tmp_path / "patch", "6.3.9.0", ["ivr_inbound"]))
    new = pending.enterprise_manifest()["modules"]["ivr_inbound"]["manifest_id"]
    before = (pending.pids()["ivr01_inbound"], inbound_id(pending, "ivr01"))

    rc, out, recap = pending.playbook(
        "update_ivr.yml",
        *ivr01_vars(tmp_path, remote_ivr_update_permission_delay=-5),
        "-e",
        "update_ivr_max_capacity_share=0.5",
    )

    assert rc != 0
    said = flat(out)
    assert "2 hosts checked: 1 updated, 0 up to date, 0 waiting, 1 failed, 0 held back" in said, out
    assert (
        "ivr01: not checked: remote_ivr_update_permission_delay is -5; it must be a positive "
        "number of seconds between two polls; nothing was stopped"
    ) in said, out
    assert {host: recap[host]["failed"] for host in ("ivr01", "ivr02")} == {"ivr01": 1, "ivr02": 0}
    assert inbound_id(pending, "ivr02") == new
    assert (pending.pids()["ivr01_inbound"], inbound_id(pending, "ivr01")) == before


@pytest.mark.bad_input
def test_a_package_the_enterprise_lacks_fails_only_the_hosts_that_need_it(pending, tmp_path):
    # After the test above ivr02 is up to date and ivr01 still needs IVR Inbound's package.
    new = pending.enterprise_manifest()["modules"]["ivr_inbound"]["manifest_id"]
    assert inbound_id(pending, "ivr02") == new
    package = pending.dir / "enterprise" / "dist" / "packages" / "ivr_inbound" / str(new)
    kept = tmp_path / "kept"
    shutil.move(package, kept)
    # ivr02's update left the package in the controller's cache, which a download trusts.
    shutil.rmtree(pending.dir / "cache" / "packages" / "ivr_inbound" / str(new))
    before = (pending.pids(), inbound_id(pending, "ivr01"))
    try:
        rc, out, recap = pending.playbook("update_ivr.yml")
    finally:
        shutil.move(kept, package)

    assert rc != 0
    said = flat(out)
    assert "2 hosts checked: 0 updated, 1 up to date, 0 waiting, 1 failed, 0 held back" in said, out
    assert re.search(
        r"ivr01: not checked: could not download from the enterprise: [^;]*"
        rf"ivr_inbound/{new}/version\.txt \(HTTP Error 404: File not found\); nothing was "
        r"stopped",
        said,
    ), out
    assert {host: recap[host]["failed"] for host in ("ivr01", "ivr02")} == {"ivr01": 1, "ivr02": 0}
    assert (pending.pids(), inbound_id(pending, "ivr01")) == before


# -- many updates back to back under load ---------------------------------------------------------


@pytest.fixture(scope="module")
def busy_lab(lab, tmp_path_factory):
    busy = type(lab)(tmp_path_factory.mktemp("busylab"), lab.base_port + BUSY_LAB_OFFSET)
    busy.labctl("up", *BUSY_LAB, "--seed", "11")
    yield busy
    busy.labctl("down", check=False)


def test_back_to_back_updates_under_load_drop_no_call(busy_lab, tmp_path):
    rounds = 4
    rc, out, recap = busy_lab.playbook(
        str(CYCLES), "-e", f"gate_cycles_rounds={rounds}", "-e", f"gate_cycles_out={tmp_path}"
    )

    assert rc == 0, out
    cycles = [c for host in HOSTS for c in json.loads((tmp_path / f"{host}.json").read_text())]
    assert len(cycles) == rounds * len(HOSTS) * len(SERVICES) >= 20
    # Calls were up when each drain began, and the drain still granted before the stop.
    assert sum(1 for c in cycles if c["busy_before"] > 0) >= len(cycles) - 2, cycles
    assert all(c["granted_msg"].endswith("s") and "granted" in c["granted_msg"] for c in cycles)
    dropped = {
        (host, service): call(busy_lab, host, service, "/status")["calls_dropped"]
        for host in HOSTS
        for service in SERVICES
    }
    assert dropped == dict.fromkeys(dropped, 0)
