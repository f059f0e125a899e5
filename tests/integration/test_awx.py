"""What AWX sees: update_ivr.yml run by ansible-runner, and the execution environment.

ansible-runner is what AWX runs a job with; its artifacts (rc, status, job_events) are what
the job shows, and the set_stats data of the run is the job's artifacts. No container engine
runs here, so the execution environment is checked as far as `ansible-builder create` goes.
The runner tests run in file order against one lab.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import INVENTORY, REPO

BIN = Path(sys.executable).parent
SAMPLE = "lab/patches/sample-6.3.2"
HOSTS = ("ivr01", "ivr02")
COUNTS = ("hosts_checked", "updated", "up_to_date", "waiting", "failed", "held")


def run_job(lab, private_dir, playbook, ident):
    """Run a playbook as AWX would; return (runner exit code, artifacts dir, job events)."""
    cmd = [
        str(BIN / "ansible-runner"),
        "run",
        str(private_dir),
        "--playbook",
        f"playbooks/{playbook}",
        "--project-dir",
        str(REPO),
        "--inventory",
        str(INVENTORY),
        "--ident",
        ident,
        "--quiet",
    ]
    proc = subprocess.run(cmd, env=lab.env, capture_output=True, text=True, check=False)

    artifacts = private_dir / "artifacts" / ident
    files = (artifacts / "job_events").glob("*.json")
    # Event files are named <counter>-<uuid>.json; the counter is the order of the run.
    ordered = sorted(files, key=lambda path: int(path.name.split("-", 1)[0]))
    events = [json.loads(path.read_text(encoding="utf-8")) for path in ordered]
    return proc.returncode, artifacts, events


def artifact_data(events):
    """The set_stats data of the run: what AWX shows as the job's artifacts."""
    stats = [e for e in events if e["event"] == "playbook_on_stats"]
    assert len(stats) == 1, [e["event"] for e in events]
    return stats[0]["event_data"]["artifact_data"]


def summary_lines(events):
    shown = [
        e["event_data"]["res"]["msg"]
        for e in events
        if e["event"] == "runner_on_ok" and e["event_data"].get("task") == "Show the run's summary"
    ]
    assert len(shown) == 1
    return shown[0]


@pytest.fixture(scope="module")
def private_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runner")


def test_a_job_that_updates_publishes_the_run_summary(lab, private_dir):
    rc, out, _recap = lab.playbook("apply_patch.yml", "-e", f"enterprise_patch_bundle={SAMPLE}")
    assert rc == 0, out

    code, artifacts, events = run_job(lab, private_dir, "update_ivr.yml", "update")

    assert code == 0, (artifacts / "stdout").read_text(encoding="utf-8")[-3000:]
    assert (artifacts / "rc").read_text() == "0"
    assert (artifacts / "status").read_text() == "successful"
    data = artifact_data(events)
    summary = data["prairiefyre_updater_summary"]
    assert {key: summary[key] for key in COUNTS} == {
        "hosts_checked": 2,
        "updated": 2,
        "up_to_date": 0,
        "waiting": 0,
        "failed": 0,
        "held": 0,
    }
    assert summary["hosts"]["updated"] == list(HOSTS)
    assert (summary["product_version"], summary["check_mode"]) == ("6.3.2.0", False)
    rows = sorted(
        (r["host"], r["service"], r["module"], r["old_id"], r["new_id"], r["version_reported"])
        for r in summary["services"]
    )
    assert rows == [
        (host, service, module, old_id, old_id + 1, "6.3.2.0")
        for host in HOSTS
        for service, module, old_id in (
            ("IVR Inbound", "ivr_inbound", 1000),
            ("IVR UpIQ", "ivr_upiq", 3000),
        )
    ]
    assert all(r["wait_seconds"] >= 0 and r["downtime_seconds"] > 0 for r in summary["services"])
    assert summary["calls_dropped"] == 0
    assert summary["downtime_seconds"] == pytest.approx(
        sum(r["downtime_seconds"] for r in summary["services"]), abs=0.01
    )
    # Each host's own report, from the update role, sits beside the totals.
    assert {h: data["prairiefyre_updater"][h]["status"] for h in HOSTS} == dict.fromkeys(
        HOSTS, "updated"
    )
    assert summary_lines(events)[0] == (
        "2 hosts checked: 2 updated, 0 up to date, 0 waiting, 0 failed, 0 held back"
    )


def test_a_scheduled_job_with_nothing_to_do_says_so(lab, private_dir):
    code, artifacts, events = run_job(lab, private_dir, "update_ivr.yml", "noop")

    assert code == 0
    assert (artifacts / "status").read_text() == "successful"
    data = artifact_data(events)
    summary = data["prairiefyre_updater_summary"]
    assert {key: summary[key] for key in COUNTS} == {
        "hosts_checked": 2,
        "updated": 0,
        "up_to_date": 2,
        "waiting": 0,
        "failed": 0,
        "held": 0,
    }
    assert (summary["services"], summary["calls_dropped"]) == ([], 0)
    # No host went through the update, so none has a report of its own.
    assert "prairiefyre_updater" not in data
    changed = [
        e for e in events if e["event"] == "runner_on_ok" and e["event_data"]["res"].get("changed")
    ]
    assert changed == []


def test_a_verify_job_after_the_update_passes(lab, private_dir):
    code, artifacts, events = run_job(lab, private_dir, "verify_ivr.yml", "verify")

    assert code == 0, (artifacts / "stdout").read_text(encoding="utf-8")[-3000:]
    assert (artifacts / "status").read_text() == "successful"
    checked = [
        e["event_data"]["res"]["msg"]
        for e in events
        if e["event"] == "runner_on_ok"
        and e["event_data"].get("task")
        == "Check UpdaterService.log holds the PostTask line of this version"
    ]
    assert sorted(checked) == [f"{host}: {checked_line(lab, host)}" for host in HOSTS]


def checked_line(lab, host):
    """The last line of the host's log, the PostTask line the update wrote."""
    raw = (lab.host_dir(host) / "install" / "CCM" / "Logs" / "UpdaterService.log").read_bytes()
    return raw.decode("utf-8-sig").rstrip("\r\n").split("\r\n")[-1]


# --- the execution environment -----------------------------------------------------------


def load_ee():
    return yaml.safe_load((REPO / "execution-environment.yml").read_text(encoding="utf-8"))


def collection_version():
    return yaml.safe_load((REPO / "galaxy.yml").read_text(encoding="utf-8"))["version"]


def requirement_pins():
    """The venv's pins of requirements.txt for Python 3.12+, the EE's Python."""
    pins = {}
    for line in (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines():
        requirement, _semicolon, marker = line.partition(";")
        name, _equals, version = requirement.partition("==")
        if version and '< "3.12"' not in marker:
            pins[name.strip()] = version.strip()
    return pins


def test_the_ee_installs_the_tarball_galaxy_builds_and_the_pinned_tools():
    ee = load_ee()
    tarball = f"prairiefyre-updater-{collection_version()}.tar.gz"

    assert ee["version"] == 3
    assert ee["additional_build_files"] == [
        {"src": f".build/dist/{tarball}", "dest": "collections"}
    ]
    assert ee["dependencies"]["galaxy"] == {
        "collections": [{"name": f"/build/collections/{tarball}", "type": "file"}]
    }
    pins = requirement_pins()
    assert (
        ee["dependencies"]["ansible_core"]["package_pip"] == f"ansible-core=={pins['ansible-core']}"
    )
    assert ee["dependencies"]["ansible_runner"]["package_pip"] == (
        f"ansible-runner=={pins['ansible-runner']}"
    )


def test_ansible_builder_creates_the_build_context(tmp_path):
    dist = tmp_path / ".build" / "dist"
    built = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(dist), str(REPO)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    tarball = dist / f"prairiefyre-updater-{collection_version()}.tar.gz"
    # The EE file names its files relative to itself: a copy beside the tarball is the repo's.
    shutil.copy(REPO / "execution-environment.yml", tmp_path)

    created = subprocess.run(
        [
            str(BIN / "ansible-builder"),
            "create",
            "--file",
            str(tmp_path / "execution-environment.yml"),
            "--context",
            str(tmp_path / "context"),
            "--output-filename",
            "Containerfile",
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert created.returncode == 0, created.stdout + created.stderr
    build = tmp_path / "context" / "_build"
    assert (build / "collections" / tarball.name).read_bytes() == tarball.read_bytes()
    assert yaml.safe_load((build / "requirements.yml").read_text(encoding="utf-8")) == {
        "collections": [{"name": f"/build/collections/{tarball.name}", "type": "file"}]
    }
    containerfile = (tmp_path / "context" / "Containerfile").read_text(encoding="utf-8")
    assert "COPY _build /build" in containerfile
    assert "ansible-galaxy collection install" in containerfile
    assert 'ARG EE_BASE_IMAGE="localhost/prairiefyre/ee-base:latest"' in containerfile
