"""A fleet of four lab hosts: the capacity guard, failures that stay with their host, verify.

The tests run in file order against one lab, each building on the state the previous one
left. The fleet's capacity is 80 ports: ivr01 16, ivr02 16, ivr03 32, ivr04 16.
"""

import hashlib
import json
import re
import time
import urllib.request

import pytest
from conftest import REPO, Lab

HOSTS = ("ivr01", "ivr02", "ivr03", "ivr04")
CAPACITY = {"ivr01": 16, "ivr02": 16, "ivr03": 32, "ivr04": 16}
UPDATE_PLAY = "PLAY [Update the remote IVR servers that need it]"
# ansible-playbook's JSON result format keeps a message on one line, so it can be matched.
JSON_RESULTS = {"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
# ivr02 gives up soon when its ports stay busy, so that a test can make it wait in vain.
IMPATIENT = {
    "remote_ivr_update_permission_retries": 3,
    "remote_ivr_update_permission_delay": 1,
    "remote_ivr_update_permission_wait": 1,
}
# For a run in which ivr02 must get through: the lab's random calls could meet all four of its
# impatient polls (about one run in a hundred), so it is given as many as the others' minutes.
PATIENT = ("-e", "remote_ivr_update_permission_retries=30")


def write_inventory(directory):
    """The lab inventory with four IVR hosts, each with its lab index and capacity."""
    directory.mkdir(parents=True)
    (directory / "group_vars").symlink_to(REPO / "inventory" / "lab" / "group_vars")
    hosts = {}
    for index, host in enumerate(HOSTS, start=1):
        hosts[host] = {"lab_index": index, "update_ivr_capacity": CAPACITY[host]}
    hosts["ivr02"].update(IMPATIENT)
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            },
            "children": {
                "enterprise": {"hosts": {"enterprise-lab": {}}},
                "ivr_servers": {"hosts": hosts},
            },
        }
    }
    path = directory / "hosts.yml"
    path.write_text(json.dumps(inventory, indent=2) + "\n", encoding="utf-8")
    return path


def write_patch(directory, patch_id, version, modules):
    """A patch bundle giving each of `modules` ({name: manifest_id}) a new version.txt."""
    content = f"{version}\n".encode()
    entry = {"size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    patch = {"format": 1, "patch_id": patch_id, "product_version": version, "modules": {}}
    for module, manifest_id in modules.items():
        (directory / "files" / module).mkdir(parents=True)
        (directory / "files" / module / "version.txt").write_bytes(content)
        patch["modules"][module] = {
            "manifest_id": manifest_id,
            "version": version,
            "files": {"version.txt": entry},
        }
    (directory / "patch.json").write_text(json.dumps(patch, indent=2), encoding="utf-8")
    return directory


class Fleet:
    def __init__(self, lab, inventory, patches):
        self.lab = lab
        self.inventory = inventory
        self.patches = patches

    def playbook(self, name, *args):
        return self.lab.run_playbook(
            str(REPO / "playbooks" / name), *args, inventory=self.inventory, env=JSON_RESULTS
        )

    def apply(self, bundle):
        rc, out, _recap = self.playbook(
            "apply_patch.yml", "-e", f"enterprise_patch_bundle={bundle}"
        )
        assert rc == 0, out

    def ids(self, module):
        return {h: self.lab.record(h)["modules"][module]["manifest_id"] for h in HOSTS}

    def admin(self, host, service, action, body):
        index = int(host.removeprefix("ivr"))
        port = self.lab.base_port + 10 * index + ("inbound", "outbound", "upiq").index(service)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/admin/{action}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.load(answer)

    def report(self, host):
        return json.loads((self.lab.dir / "reports" / f"{host}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, worker_base_port):
    root = tmp_path_factory.mktemp("fleet")
    lab = Lab(root / "lab", worker_base_port)
    try:
        # Few, short calls: permission comes within a poll or two, so the batches show quickly.
        lab.labctl("up", "--hosts", ",".join(HOSTS), "--load", "0.05", "--mean-call", "2")
        yield Fleet(lab, write_inventory(root / "inventory"), root / "patches")
    finally:
        # Also after a failed start, which may have left supervisord running.
        lab.labctl("down", check=False)


def summary_line(out):
    """The first line of the run's summary, which update_ivr.yml shows at its end."""
    match = re.search(r'"msg": \[\s*"(\d+ hosts checked: [^"]*)"', out)
    assert match, out[-3000:]
    return match[1]


def batches(out):
    """The hosts each serial batch of the update play ran on, in order."""
    found = []
    for section in out.split(UPDATE_PLAY)[1:]:
        play = section.split("\nPLAY [")[0]
        found.append(sorted(set(re.findall(r"^(?:ok|changed|skipping): \[(ivr\d+)", play, re.M))))
    return found


def wait_for_version(lab, host, service, version, timeout=30):
    """Wait until the lab service answers and reports version; fail saying what it reports."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reported = lab.service_status(host, service)["version"]
        except OSError as error:
            reported = f"nothing ({error})"
        if reported == version:
            return
        assert time.monotonic() < deadline, f"{host} {service} reports {reported}, not {version}"
        time.sleep(0.2)


def test_an_up_to_date_fleet_is_checked_and_nothing_else_runs(fleet):
    before = fleet.lab.pids()

    rc, out, recap = fleet.playbook("update_ivr.yml")

    assert rc == 0, out
    assert '"msg": "0 of 4 hosts need an update."' in out
    assert f"{UPDATE_PLAY} ***" in out and "skipping: no hosts matched" in out
    assert summary_line(out) == (
        "4 hosts checked: 0 updated, 4 up to date, 0 waiting, 0 failed, 0 held back"
    )
    assert {h: recap[h]["changed"] for h in HOSTS} == dict.fromkeys(HOSTS, 0)
    assert fleet.lab.pids() == before


def test_batches_hold_at_most_the_share_of_the_fleets_capacity(fleet):
    fleet.apply(REPO / "lab" / "patches" / "sample-6.3.2")

    rc, out, recap = fleet.playbook(
        "update_ivr.yml", "-e", "update_ivr_max_capacity_share=0.4", *PATIENT
    )

    assert rc == 0, out
    assert (
        '"msg": "4 of 4 hosts need an update: ivr01, ivr02, ivr03, ivr04; in 3 batches of 2, 1 '
        "and 1 hosts: a batch holds at most 40 % of the fleet's IVR capacity (32 of 80), and a "
        'host larger than that goes alone."'
    ) in out
    assert batches(out) == [["ivr01", "ivr02"], ["ivr03"], ["ivr04"]]
    assert all(recap[h]["failed"] == 0 for h in HOSTS)
    assert fleet.ids("ivr_inbound") == dict.fromkeys(HOSTS, 1001)

    # A batch starts when the one before it has finished (reports are in whole seconds).
    report = {h: fleet.report(h) for h in HOSTS}
    assert (
        max(report["ivr01"]["finished"], report["ivr02"]["finished"]) <= report["ivr03"]["started"]
    )
    assert report["ivr03"]["finished"] <= report["ivr04"]["started"]


def test_a_host_waiting_in_vain_holds_back_the_rest_when_the_operator_says_so(fleet):
    fleet.apply(
        write_patch(
            fleet.patches / "outbound-6.3.3", "outbound-6.3.3", "6.3.3.0", {"ivr_outbound": 2001}
        )
    )
    fleet.admin("ivr02", "outbound", "hold", {"ports": 4, "seconds": 3600})
    before = fleet.lab.pids()

    rc, out, recap = fleet.playbook("update_ivr.yml", "-e", "update_ivr_max_fail_percentage=0")

    assert rc != 0
    assert batches(out)[:2] == [["ivr01"], ["ivr02"]]
    assert summary_line(out) == (
        "4 hosts checked: 1 updated, 0 up to date, 1 waiting, 0 failed, 2 held back"
    )
    assert "ivr03: not updated: held back because too many updates of this run failed" in out
    assert {h: recap[h]["failed"] for h in HOSTS} == {
        "ivr01": 0,
        "ivr02": 1,
        "ivr03": 0,
        "ivr04": 0,
    }
    assert fleet.ids("ivr_outbound") == {"ivr01": 2001, "ivr02": 2000, "ivr03": 2000, "ivr04": 2000}
    # Waiting stops nothing: the busy service kept its process and its calls.
    assert fleet.lab.pids()["ivr02_outbound"] == before["ivr02_outbound"]
    assert fleet.lab.service_status("ivr02", "outbound")["calls_dropped"] == 0


def test_a_failed_host_alone_in_its_batch_does_not_stop_the_rest(fleet):
    rc, out, recap = fleet.playbook("update_ivr.yml")

    assert rc != 0
    assert batches(out) == [["ivr02"], ["ivr03"], ["ivr04"]]
    assert summary_line(out) == (
        "4 hosts checked: 2 updated, 1 up to date, 1 waiting, 0 failed, 0 held back"
    )
    assert {h: recap[h]["failed"] for h in HOSTS} == {
        "ivr01": 0,
        "ivr02": 1,
        "ivr03": 0,
        "ivr04": 0,
    }
    assert re.search(r'"msg": "ivr02: IVR Outbound: [^"]*nothing was stopped\."', out), out[-3000:]
    assert fleet.ids("ivr_outbound") == {"ivr01": 2001, "ivr02": 2000, "ivr03": 2001, "ivr04": 2001}
    assert fleet.report("ivr02")["status"] == "waiting"


def test_a_host_that_cannot_be_checked_fails_alone(fleet):
    fleet.admin("ivr02", "outbound", "hangup", {"ports": [1, 2, 3, 4]})
    record = fleet.lab.host_dir("ivr01") / "install" / ".updater" / "manifest.json"
    good = record.read_bytes()
    record.write_text("{not json", encoding="utf-8")
    try:
        rc, out, recap = fleet.playbook("update_ivr.yml", *PATIENT)
    finally:
        record.write_bytes(good)

    assert rc != 0
    assert summary_line(out) == (
        "4 hosts checked: 1 updated, 2 up to date, 0 waiting, 1 failed, 0 held back"
    )
    assert re.search(r'"ivr01: [^"]*manifest\.json[^"]*"', out), out[-3000:]
    assert {h: recap[h]["failed"] for h in HOSTS} == {
        "ivr01": 1,
        "ivr02": 0,
        "ivr03": 0,
        "ivr04": 0,
    }
    assert fleet.ids("ivr_outbound") == dict.fromkeys(HOSTS, 2001)


def test_verify_needs_no_time_to_check_the_log_against_the_last_update(fleet):
    rc, out, _recap = fleet.playbook("verify_ivr.yml")

    assert rc == 0, out
    assert (
        '"msg": "ivr03: IVR Outbound runs 6.3.3.0, the version the enterprise ships for its '
        'module."'
    ) in out


def test_verify_fails_a_post_task_older_than_the_last_update(fleet):
    record = fleet.lab.host_dir("ivr03") / "install" / ".updater" / "last_update.json"
    last = json.loads(record.read_text(encoding="utf-8"))
    record.write_text(json.dumps(dict(last, started="2099-01-01T00:00:00Z")), encoding="utf-8")

    rc, out, recap = fleet.playbook("verify_ivr.yml", "--limit", "ivr03")

    assert rc != 0
    assert recap["ivr03"]["failed"] == 1
    assert (
        "expected a PostTask line for version 6.3.3.0 not older than 2099-01-01T00:00:00Z "
        f"(the start of the last update in {record}), found 6.3.3.0 at "
    ) in out

    rc, out, _recap = fleet.playbook(
        "verify_ivr.yml", "--limit", "ivr03", "-e", "ivr_update_verify_since=2000-01-01T00:00:00Z"
    )
    assert rc == 0, out


def test_verify_names_both_versions_when_a_service_runs_another(fleet):
    target = fleet.lab.host_dir("ivr04") / "install" / "IVR" / "UpIQ" / "version.txt"
    target.write_text("9.9.9.9\n", encoding="utf-8")
    fleet.lab.labctl("ctl", "restart", "ivr04_upiq")
    # supervisord calls the program running before it answers HTTP.
    wait_for_version(fleet.lab, "ivr04", "upiq", "9.9.9.9")

    rc, out, recap = fleet.playbook("verify_ivr.yml", "--limit", "ivr04")

    assert rc != 0
    assert recap["ivr04"]["failed"] == 1
    assert "ivr04: IVR UpIQ reports version 9.9.9.9, the enterprise ships 6.3.2.0." in out
