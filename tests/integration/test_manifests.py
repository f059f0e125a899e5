"""Signed manifests through the real playbooks: two patches in a row, pull mode, and the inputs
a host must refuse (an altered manifest, another key, a replayed older manifest, a bad patch).

The tests run in file order against one lab of their own (conftest's LAB_PORT_OFFSETS gives
this module 19100-19199); each builds on the state the previous one left.
"""

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import load_pem_public_key

REPO = Path(__file__).resolve().parents[2]
HOSTS = ("ivr01", "ivr02")
SAMPLE = "lab/patches/sample-6.3.2"
SECOND = "lab/patches/second-6.3.3"
POSTTASK = re.compile(
    r"^Info {6}\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}:\d{2} (AM|PM) {5}Loaded PostTask: Assembly "
    r"prairieFyre\.Updater\.Tasks, Version=(?P<version>[0-9.]+), Culture=neutral, "
    r"PublicKeyToken=null$"
)


@pytest.fixture(scope="module")
def keys(lab):
    """The enterprise's key pair, made by the collection's helper, and a stranger's."""
    directory = lab.dir / "keys"
    for name in ("enterprise", "stranger"):
        subprocess.run(
            [str(REPO / "scripts" / "make_signing_key.sh"), str(directory), name],
            check=True,
            capture_output=True,
        )
    return directory


def key_id(pub_path):
    der = base64.b64decode("".join(pub_path.read_text().splitlines()[1:-1]))
    return hashlib.sha256(der).hexdigest()[:16]


def extra_vars(lab, keys, public="enterprise", **more):
    """A vars file that signs on the enterprise and verifies on the hosts; returns "@path"."""
    values = {
        "enterprise_patch_signing_key": str(keys / "enterprise.key"),
        "remote_ivr_update_public_key": (keys / f"{public}.pub").read_text(),
        **more,
    }
    path = lab.dir / f"vars-{public}-{len(more)}.json"
    path.write_text(json.dumps(values), encoding="utf-8")
    return f"@{path}"


def dist(lab):
    return lab.dir / "enterprise" / "dist"


def tree(root):
    """Every path under root with its mode and bytes, to prove a run changed nothing."""
    found = {}
    for current, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(current, name)
            data = None if name in dirs else Path(path).read_bytes()
            found[os.path.relpath(path, root)] = (os.lstat(path).st_mode, data)
    return found


def installs(lab):
    return {host: tree(lab.host_dir(host) / "install") for host in HOSTS}


def post_tasks(lab, host):
    raw = (lab.host_dir(host) / "install" / "CCM" / "Logs" / "UpdaterService.log").read_bytes()
    lines = raw.decode("utf-8-sig").split("\r\n")
    return [m["version"] for m in map(POSTTASK.match, lines) if m]


def ids(lab, host):
    record = lab.record(host)
    modules = {name: entry["manifest_id"] for name, entry in record["modules"].items()}
    return record["serial"], modules


def verify_signature(lab, keys):
    """Check dist's manifest against its signature with the cryptography package."""
    data = (dist(lab) / "manifest.json").read_bytes()
    doc = json.loads((dist(lab) / "manifest.json.sig").read_text())
    entry = next(e for e in doc["signatures"] if e["sha256"] == hashlib.sha256(data).hexdigest())
    public = load_pem_public_key((keys / "enterprise.pub").read_bytes())
    assert isinstance(public, ed25519.Ed25519PublicKey)
    public.verify(base64.b64decode(entry["signature"]), data)
    return doc


def key_lines(keys, name):
    """The base64 lines of a PEM key file, none of which may appear in a playbook's output."""
    return [line for line in (keys / name).read_text().splitlines() if "-----" not in line]


def test_the_sample_patch_is_applied_and_signed(lab, keys):
    rc, out, recap = lab.playbook(
        "apply_patch.yml",
        "-v",
        "-e",
        f"enterprise_patch_bundle={SAMPLE}",
        "-e",
        extra_vars(lab, keys),
    )

    assert rc == 0, out
    assert not [line for line in key_lines(keys, "enterprise.key") if line in out]
    assert recap["enterprise-lab"]["changed"] == 1
    doc = verify_signature(lab, keys)
    assert (doc["key_id"], len(doc["signatures"])) == (key_id(keys / "enterprise.pub"), 2)
    shutil.copy(dist(lab) / "manifest.json", lab.dir / "serial-2.json")
    shutil.copy(dist(lab) / "manifest.json.sig", lab.dir / "serial-2.json.sig")


def test_hosts_verify_and_install_the_signed_sample(lab, keys):
    rc, out, recap = lab.playbook("update_ivr.yml", "-v", "-e", extra_vars(lab, keys))

    assert rc == 0, out
    assert not [line for line in key_lines(keys, "enterprise.pub") if line in out]
    for host in HOSTS:
        assert ids(lab, host) == (2, {"ivr_inbound": 1001, "ivr_outbound": 2000, "ivr_upiq": 3001})
        assert post_tasks(lab, host)[-1] == "6.3.2.0"


def test_the_second_patch_is_applied_and_signed(lab, keys):
    rc, out, recap = lab.playbook(
        "apply_patch.yml", "-e", f"enterprise_patch_bundle={SECOND}", "-e", extra_vars(lab, keys)
    )

    assert rc == 0, out
    assert recap["enterprise-lab"]["changed"] == 1
    manifest = lab.enterprise_manifest()
    assert (manifest["serial"], manifest["product_version"]) == (3, "6.3.3.0")
    verify_signature(lab, keys)


def test_hosts_pulling_themselves_move_to_the_second_patch(lab, keys):
    before = lab.pids()

    rc, out, recap = lab.playbook(
        "update_ivr.yml",
        "-v",
        "-e",
        extra_vars(lab, keys, remote_ivr_update_pull_from_enterprise=True),
    )

    assert rc == 0, out
    assert not [line for line in key_lines(keys, "enterprise.pub") if line in out]
    after = lab.pids()
    restarted = sorted(name for name in before if before[name] != after.get(name))
    assert restarted == [f"{h}_{s}" for h in HOSTS for s in ("inbound", "outbound")]
    # The hosts downloaded the new packages themselves, not through the controller's cache.
    assert not (lab.dir / "cache" / "packages" / "ivr_inbound" / "1002").exists()


def test_hosts_moved_through_both_manifest_ids_in_order(lab):
    for host in HOSTS:
        assert ids(lab, host) == (3, {"ivr_inbound": 1002, "ivr_outbound": 2001, "ivr_upiq": 3001})
        assert post_tasks(lab, host) == ["6.3.1.0", "6.3.2.0", "6.3.3.0"], host
        assert lab.service_status(host, "outbound")["version"] == "6.3.3.0"


def test_verification_checks_the_signature_and_passes(lab, keys):
    rc, out, recap = lab.playbook("verify_ivr.yml", "-e", extra_vars(lab, keys))

    assert rc == 0, out
    assert (
        "ivr01: IVR Outbound runs 6.3.3.0, the version the enterprise ships for its module."
        in " ".join(out.split())
    ), out


def test_a_second_signed_run_changes_and_stops_nothing(lab, keys):
    before = (lab.pids(), installs(lab))

    rc, out, recap = lab.playbook("update_ivr.yml", "-e", extra_vars(lab, keys))

    assert rc == 0, out
    assert {h: recap[h]["changed"] for h in HOSTS} == {"ivr01": 0, "ivr02": 0}
    assert (lab.pids(), installs(lab)) == before


# --- what hosts refuse: each fails with its message, stops nothing and changes nothing ----------


@pytest.fixture
def enterprise_kept(lab):
    """Put the enterprise's manifest and signature back after a test that damages them."""
    saved = {
        name: (dist(lab) / name).read_bytes() for name in ("manifest.json", "manifest.json.sig")
    }
    yield
    for name, data in saved.items():
        (dist(lab) / name).write_bytes(data)


def url(lab):
    return f"http://127.0.0.1:{lab.base_port}/manifest.json"


def refused(lab, message, *args):
    """Run update_ivr.yml; assert it fails with message and that nothing stopped or changed.

    Returns the run's output."""
    before = (lab.pids(), installs(lab))

    rc, out, recap = lab.playbook("update_ivr.yml", *args)

    assert rc != 0, out
    assert message in " ".join(out.split()), out
    assert [recap[h]["changed"] for h in HOSTS if h in recap] == [0] * len(
        recap.keys() & set(HOSTS)
    )
    assert (lab.pids(), installs(lab)) == before
    return out


@pytest.mark.bad_input
def test_an_altered_manifest_is_refused(lab, keys, enterprise_kept):
    path = dist(lab) / "manifest.json"
    path.write_bytes(path.read_bytes().replace(b'"6.3.2.0"', b'"6.3.9.0"', 1))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    refused(
        lab,
        f"enterprise manifest {url(lab)}: signature file {url(lab)}.sig holds no signature of this "
        f"manifest (sha256 {digest}): the manifest was altered after it was signed",
        "-e",
        extra_vars(lab, keys),
    )


@pytest.mark.bad_input
def test_a_manifest_signed_by_another_key_is_refused(lab, keys):
    refused(
        lab,
        f"enterprise manifest {url(lab)}: it is signed by key {key_id(keys / 'enterprise.pub')}, "
        f"not by the trusted key {key_id(keys / 'stranger.pub')}",
        "-e",
        extra_vars(lab, keys, public="stranger"),
    )


@pytest.mark.bad_input
def test_an_unsigned_manifest_is_refused_by_a_host_that_pulls(lab, keys, enterprise_kept):
    (dist(lab) / "manifest.json.sig").unlink()
    cause = (
        f"enterprise manifest {url(lab)}: it has no readable signature, and a host that trusts a "
        f"key refuses an unsigned manifest: cannot fetch {url(lab)}.sig: HTTP 404 File not found"
    )

    out = refused(
        lab, cause, "-e", extra_vars(lab, keys, remote_ivr_update_pull_from_enterprise=True)
    )

    # Every host failed its own read, and the run still sums up and names each host's cause.
    said = " ".join(out.split())
    assert "2 hosts checked: 0 updated, 0 up to date, 0 waiting, 2 failed, 0 held back" in said
    for host in HOSTS:
        assert f"{host}: not checked: {cause}; nothing was stopped" in said, out


@pytest.mark.bad_input
def test_a_replayed_older_signed_manifest_is_refused(lab, keys, enterprise_kept):
    shutil.copy(lab.dir / "serial-2.json", dist(lab) / "manifest.json")
    shutil.copy(lab.dir / "serial-2.json.sig", dist(lab) / "manifest.json.sig")

    refused(
        lab,
        "the enterprise manifest has serial 2, lower than the serial 3 this host last installed "
        "from; refusing an older manifest, which is a replay or a rolled-back enterprise (set "
        "allow_downgrade to accept it)",
        "-e",
        extra_vars(lab, keys),
    )


@pytest.mark.bad_input
def test_a_patch_without_the_key_is_refused_and_the_enterprise_kept(lab, keys, tmp_path):
    bundle = tmp_path / "third"
    shutil.copytree(REPO / SECOND, bundle)
    doc = json.loads((bundle / "patch.json").read_text())
    doc["patch_id"] = "third-6.3.4"
    for module in doc["modules"].values():
        module.pop("manifest_id")
    (bundle / "patch.json").write_text(json.dumps(doc))
    before = tree(dist(lab))

    rc, out, recap = lab.playbook("apply_patch.yml", "-e", f"enterprise_patch_bundle={bundle}")

    assert rc != 0, out
    assert (
        f"{dist(lab)}/manifest.json.sig exists: the enterprise signs its manifest, so give "
        "signing_key to sign the patched one (or remove manifest.json.sig to stop signing)"
    ) in " ".join(out.split())
    assert tree(dist(lab)) == before
