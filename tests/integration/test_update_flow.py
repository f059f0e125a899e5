"""The whole update, from patch to verified log line, through the real playbooks.

The tests run in file order against one lab: each step builds on the state the previous
one left, as an operator's runs do.
"""

import json
import re
import urllib.request

import pytest

SAMPLE = "lab/patches/sample-6.3.2"
HOSTS = ("ivr01", "ivr02")
POSTTASK = re.compile(
    r"^Info {6}\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}:\d{2} (AM|PM) {5}Loaded PostTask: Assembly "
    r"prairieFyre\.Updater\.Tasks, Version=6\.3\.2\.0, Culture=neutral, PublicKeyToken=null$"
)


def log_lines(lab, host):
    raw = (lab.host_dir(host) / "install" / "CCM" / "Logs" / "UpdaterService.log").read_bytes()
    return raw.decode("utf-8-sig").split("\r\n")


def test_a_fresh_lab_is_up_to_date_and_nothing_stops(lab):
    before = lab.pids()

    rc, out, recap = lab.playbook("update_ivr.yml")

    assert rc == 0, out
    assert {h: recap[h]["changed"] for h in HOSTS} == {"ivr01": 0, "ivr02": 0}
    assert lab.pids() == before


def test_applying_the_sample_patch_bumps_two_modules(lab):
    rc, out, recap = lab.playbook("apply_patch.yml", "-e", f"enterprise_patch_bundle={SAMPLE}")

    assert rc == 0, out
    assert recap["enterprise-lab"]["changed"] == 1
    ids = {m: spec["manifest_id"] for m, spec in lab.enterprise_manifest()["modules"].items()}
    assert ids == {"ivr_inbound": 1001, "ivr_outbound": 2000, "ivr_upiq": 3001}


def test_applying_the_same_patch_again_changes_nothing(lab):
    rc, out, recap = lab.playbook("apply_patch.yml", "-e", f"enterprise_patch_bundle={SAMPLE}")

    assert rc == 0, out
    assert recap["enterprise-lab"]["changed"] == 0


def test_check_mode_reports_changes_and_stops_nothing(lab):
    before = lab.pids()

    rc, out, recap = lab.playbook("update_ivr.yml", "--check", "--diff")

    assert rc == 0, out
    assert all(recap[h]["changed"] > 0 for h in HOSTS), out
    assert lab.pids() == before
    assert lab.record("ivr01")["modules"]["ivr_inbound"]["manifest_id"] == 1000
    # The summary says what a real run would do, with no made-up wait or downtime.
    said = " ".join(out.split())
    assert (
        "2 hosts checked: 2 to update, 0 up to date, 0 waiting, 0 failed, 0 held back "
        "(check mode: no host was changed)" in said
    ), out
    for host in HOSTS:
        assert (
            f"{host} IVR Inbound: ivr_inbound 1000 -> 1001, would stop and start it; it reports "
            "6.3.1.0 now" in said
        ), out


def test_update_restarts_only_the_patched_services(lab):
    before = lab.pids()

    rc, out, recap = lab.playbook("update_ivr.yml")

    assert rc == 0, out
    assert all(recap[h]["failed"] == 0 and recap[h]["changed"] > 0 for h in HOSTS)
    after = lab.pids()
    changed = sorted(name for name in before if before[name] != after.get(name))
    assert changed == [f"{h}_{s}" for h in HOSTS for s in ("inbound", "upiq")]


def test_every_host_records_the_new_manifest_ids(lab):
    for host in HOSTS:
        ids = {m: spec["manifest_id"] for m, spec in lab.record(host)["modules"].items()}
        assert ids == {"ivr_inbound": 1001, "ivr_outbound": 2000, "ivr_upiq": 3001}, host


def test_every_host_logs_the_posttask_line(lab):
    for host in HOSTS:
        assert POSTTASK.match(log_lines(lab, host)[-2]), (host, log_lines(lab, host)[-3:])


def test_a_second_update_changes_nothing_and_stops_nothing(lab):
    before = lab.pids()

    rc, out, recap = lab.playbook("update_ivr.yml")

    assert rc == 0, out
    assert {h: (recap[h]["changed"], recap[h]["failed"]) for h in HOSTS} == {
        "ivr01": (0, 0),
        "ivr02": (0, 0),
    }
    assert lab.pids() == before


def test_verification_passes(lab):
    rc, out, recap = lab.playbook("verify_ivr.yml")

    assert rc == 0, out
    said = " ".join(out.split())
    for host, service in (("ivr01", "IVR Inbound"), ("ivr02", "IVR UpIQ")):
        assert (
            f"{host}: {service} runs 6.3.2.0, the version the enterprise ships for its module."
            in said
        ), out
    # IVR Outbound's module was not in the patch: its older version is the right one.
    assert (
        "ivr01: IVR Outbound runs 6.3.1.0, the version the enterprise ships for its module." in said
    ), out


def test_the_update_dropped_no_call(lab):
    dropped = {
        (host, service): lab.service_status(host, service)["calls_dropped"]
        for host in HOSTS
        for service in ("inbound", "outbound", "upiq")
    }

    assert dropped == dict.fromkeys(dropped, 0)


@pytest.mark.bad_input
def test_an_unreachable_enterprise_fails_every_host_and_stops_nothing(lab):
    before = lab.pids()

    rc, out, recap = lab.playbook(
        "update_ivr.yml", "-e", "remote_ivr_update_enterprise_url=http://127.0.0.1:9"
    )

    assert rc != 0
    assert {host: recap[host]["failed"] for host in HOSTS} == dict.fromkeys(HOSTS, 1), out
    said = " ".join(out.split())
    assert "2 hosts checked: 0 updated, 0 up to date, 0 waiting, 2 failed, 0 held back" in said
    for host in HOSTS:
        # Each host is named with the cause, not only the one that ran the read.
        assert (
            f"{host}: not checked: the enterprise manifest could not be read (cannot fetch "
            "http://127.0.0.1:9/manifest.json: [Errno 111] Connection refused); nothing was "
            "stopped" in said
        ), out
    assert lab.pids() == before


def hold_ports(lab, host, service, ports, seconds):
    index = int(host.removeprefix("ivr"))
    offset = ("inbound", "outbound", "upiq").index(service)
    url = f"http://127.0.0.1:{lab.base_port + 10 * index + offset}/admin/hold"
    body = json.dumps({"ports": ports, "seconds": seconds}).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.load(answer)


def test_a_limited_run_still_fails_a_host_that_never_got_permission(lab):
    rc, out, recap = lab.playbook(
        "apply_patch.yml", "-e", "enterprise_patch_bundle=lab/patches/second-6.3.3"
    )
    assert rc == 0, out
    hold_ports(lab, "ivr02", "inbound", 3, 3600)
    before = lab.pids()

    rc, out, recap = lab.playbook(
        "update_ivr.yml",
        "--limit",
        "ivr02",
        "-e",
        "remote_ivr_update_permission_retries=2",
        "-e",
        "remote_ivr_update_permission_wait=1",
    )

    assert rc != 0, out
    assert recap["ivr02"]["failed"] == 1, out
    assert "1 waiting" in out, out
    assert lab.pids()["ivr02_inbound"] == before["ivr02_inbound"]


RUN_SETTINGS = {
    "update_ivr_max_fail_percentage=100%": (
        "update_ivr_max_fail_percentage is 100%; it must be a number from 0 to 100, the "
        "percentage of failed updates after which no new batch starts; nothing was checked or "
        "stopped."
    ),
    "update_ivr_max_fail_percentage=abc": (
        "update_ivr_max_fail_percentage is abc; it must be a number from 0 to 100"
    ),
    "update_ivr_max_capacity_share=0": (
        "update_ivr_max_capacity_share is 0; it must be a number above 0 and at most 1, the "
        "share of the fleet's IVR capacity updated at once; nothing was checked or stopped."
    ),
    "update_ivr_max_capacity_share=25%": "update_ivr_max_capacity_share is 25%; it must be",
    "update_ivr_capacity=-4": (
        "update_ivr_capacity of ivr01 is -4; it must be a whole number of 0 or more (its IVR "
        "ports, say); nothing was checked or stopped."
    ),
}


@pytest.mark.bad_input
@pytest.mark.parametrize("setting", list(RUN_SETTINGS))
def test_a_bad_run_setting_is_refused_before_anything_is_read(lab, setting):
    before = lab.pids()

    rc, out, recap = lab.playbook("update_ivr.yml", "-e", setting)

    assert rc != 0
    assert RUN_SETTINGS[setting] in " ".join(out.split()), out
    assert "Read, verify and validate the enterprise manifest" not in out
    assert lab.pids() == before
