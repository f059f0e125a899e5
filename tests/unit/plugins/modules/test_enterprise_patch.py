# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""enterprise_patch, run through its main() with the run_module fixture, on the shipped bundles.

The steps follow the project's order: check mode, real run, idempotent run, idempotent check
mode, diff.
"""

import base64
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from ansible_collections.prairiefyre.updater.plugins.module_utils import signing
from ansible_collections.prairiefyre.updater.plugins.modules import enterprise_patch

REPO = Path(__file__).resolve().parents[4]
BASE = str(REPO / "lab" / "patches" / "base-6.3.1")
SAMPLE = str(REPO / "lab" / "patches" / "sample-6.3.2")


def tree(root):
    found = {}
    for current, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(current, name)
            found[os.path.relpath(path, root)] = Path(path).read_bytes()
    return found


@pytest.fixture
def dist(tmp_path, run_module):
    """An enterprise distribution holding the base release."""
    path = str(tmp_path / "dist")
    run_module(enterprise_patch, {"dist_dir": path, "patch": BASE})
    return path


def test_base_bundle_creates_the_enterprise(run_module, tmp_path):
    path = str(tmp_path / "dist")

    result = run_module(enterprise_patch, {"dist_dir": path, "patch": BASE})

    assert result["changed"] is True
    assert result["msg"] == (
        f"Applied patch base-6.3.1 to {path}: ivr_inbound new -> 1000, ivr_outbound new -> 2000, "
        "ivr_upiq new -> 3000; manifest serial 1."
    )
    assert result["serial"] == 1
    assert result["manifest"] == json.loads(Path(path, "manifest.json").read_text())
    assert "diff" not in result


def test_sample_patch_in_the_documented_order(run_module, dist):
    args = {"dist_dir": dist, "patch": SAMPLE}
    before = tree(dist)
    modules = [
        {"module": "ivr_inbound", "old_id": 1000, "new_id": 1001},
        {"module": "ivr_upiq", "old_id": 3000, "new_id": 3001},
    ]
    steps = "ivr_inbound 1000 -> 1001, ivr_upiq 3000 -> 3001; manifest serial 2."

    checked = run_module(enterprise_patch, args, check_mode=True)
    assert (checked["changed"], checked["modules"], checked["serial"]) == (True, modules, 2)
    assert checked["msg"] == f"Would apply patch sample-6.3.2 to {dist}: {steps}"
    assert tree(dist) == before

    applied = run_module(enterprise_patch, args)
    assert (applied["changed"], applied["modules"]) == (True, modules)
    assert applied["msg"] == f"Applied patch sample-6.3.2 to {dist}: {steps}"
    assert applied["manifest"] == checked["manifest"]
    assert json.loads(Path(dist, "manifest.json").read_text()) == applied["manifest"]

    again = run_module(enterprise_patch, args)
    assert (again["changed"], again["modules"], again["serial"]) == (False, [], 2)
    assert again["msg"] == f"Patch sample-6.3.2 is already applied to {dist}; nothing changed."
    after = tree(dist)

    checked_again = run_module(enterprise_patch, args, check_mode=True)
    assert (checked_again["changed"], checked_again["msg"]) == (False, again["msg"])
    assert tree(dist) == after


def test_diff_shows_the_manifest_before_and_after(run_module, dist):
    before_text = Path(dist, "manifest.json").read_text()

    result = run_module(enterprise_patch, {"dist_dir": dist, "patch": SAMPLE}, diff=True)

    path = os.path.join(dist, "manifest.json")
    assert result["diff"] == {
        "before_header": path,
        "after_header": path,
        "before": before_text,
        "after": Path(dist, "manifest.json").read_text(),
    }
    assert '"manifest_id": 1001' in result["diff"]["after"]
    assert '"manifest_id": 1001' not in result["diff"]["before"]


def test_diff_of_the_first_bundle_starts_from_nothing(run_module, tmp_path):
    path = str(tmp_path / "dist")

    result = run_module(
        enterprise_patch, {"dist_dir": path, "patch": BASE}, check_mode=True, diff=True
    )

    assert result["diff"]["before"] == ""
    assert json.loads(result["diff"]["after"]) == result["manifest"]
    assert not Path(path).exists()


def test_a_packed_bundle_applies(run_module, dist, tmp_path):
    archive = shutil.make_archive(str(tmp_path / "sample-6.3.2"), "gztar", SAMPLE, ".")

    result = run_module(enterprise_patch, {"dist_dir": dist, "patch": archive})

    assert (result["changed"], result["patch_id"]) == (True, "sample-6.3.2")


@pytest.mark.bad_input
def test_missing_options_are_named(run_module):
    result = run_module(enterprise_patch, {})

    assert (result["failed"], result["msg"]) == (
        True,
        "missing required arguments: dist_dir, patch",
    )


@pytest.mark.bad_input
def test_a_missing_bundle_is_named(run_module, dist, tmp_path):
    bundle = str(tmp_path / "nowhere")

    result = run_module(enterprise_patch, {"dist_dir": dist, "patch": bundle})

    assert (result["failed"], result["msg"]) == (
        True,
        f"bundle {bundle}: no such directory or file",
    )


@pytest.mark.bad_input
def test_a_tampered_bundle_is_refused_and_the_enterprise_kept(run_module, dist, tmp_path):
    bundle = tmp_path / "sample"
    shutil.copytree(SAMPLE, bundle)
    (bundle / "files" / "ivr_upiq" / "version.txt").write_text("6.3.2.9\n")
    before = tree(dist)

    result = run_module(enterprise_patch, {"dist_dir": dist, "patch": str(bundle)})

    listed = json.loads((bundle / "patch.json").read_text())["modules"]["ivr_upiq"]["files"]
    found = hashlib.sha256(b"6.3.2.9\n").hexdigest()
    assert (result["failed"], result["msg"]) == (
        True,
        f"bundle {bundle}: files/ivr_upiq/version.txt: sha256 is {found}, patch.json says "
        f"{listed['version.txt']['sha256']}",
    )
    assert tree(dist) == before


@pytest.mark.bad_input
def test_a_downgrade_is_refused(run_module, dist, tmp_path):
    bundle = tmp_path / "older"
    shutil.copytree(SAMPLE, bundle)
    doc = json.loads((bundle / "patch.json").read_text())
    doc["patch_id"] = "older-6.3.0"
    doc["modules"]["ivr_inbound"]["manifest_id"] = 999
    (bundle / "patch.json").write_text(json.dumps(doc))

    result = run_module(enterprise_patch, {"dist_dir": dist, "patch": str(bundle)})

    assert (result["failed"], result["msg"]) == (
        True,
        "patch older-6.3.0: module ivr_inbound would go from manifest ID 1000 down to 999; "
        "refusing the downgrade",
    )


def test_the_documentation_parses_and_lists_every_option():
    doc = yaml.safe_load(enterprise_patch.DOCUMENTATION)

    assert sorted(doc["options"]) == sorted(enterprise_patch.ARGUMENT_SPEC)
    assert enterprise_patch.ARGUMENT_SPEC["signing_key"]["no_log"] is False


@pytest.fixture
def key_file(tmp_path):
    """An Ed25519 private key PEM, as openssl genpkey writes it, readable by its owner only."""
    seed = b"\x51" * 32
    der = bytes.fromhex("302e020100300506032b657004220420") + seed
    path = tmp_path / "enterprise.key"
    path.write_text(
        "-----BEGIN PRIVATE KEY-----\n"
        + base64.b64encode(der).decode()
        + "\n-----END PRIVATE KEY-----\n"
    )
    path.chmod(0o600)
    return path, signing.SigningKey(seed)


def test_a_signed_patch_in_the_documented_order(run_module, dist, key_file):
    path, key = key_file
    args = {"dist_dir": dist, "patch": SAMPLE, "signing_key": str(path)}
    steps = "ivr_inbound 1000 -> 1001, ivr_upiq 3000 -> 3001; manifest serial 2"

    checked = run_module(enterprise_patch, args, check_mode=True)
    assert not Path(dist, "manifest.json.sig").exists()
    applied = run_module(enterprise_patch, args)
    again = run_module(enterprise_patch, args)

    assert (
        checked["msg"]
        == f"Would apply patch sample-6.3.2 to {dist}: {steps}, signed with key {key.key_id}."
    )
    assert (
        applied["msg"]
        == f"Applied patch sample-6.3.2 to {dist}: {steps}, signed with key {key.key_id}."
    )
    assert (applied["signed"], applied["key_id"]) == (True, key.key_id)
    assert (again["changed"], again["signed"]) == (False, False)
    data = Path(dist, "manifest.json").read_bytes()
    signing.check_signature(key, data, Path(dist, "manifest.json.sig").read_bytes())
    assert path.read_text() not in json.dumps([checked, applied, again])


def test_an_applied_patch_gets_signed_once(run_module, dist, key_file):
    path, key = key_file
    run_module(enterprise_patch, {"dist_dir": dist, "patch": SAMPLE})

    signed = run_module(
        enterprise_patch, {"dist_dir": dist, "patch": SAMPLE, "signing_key": str(path)}
    )

    assert (signed["changed"], signed["modules"]) == (True, [])
    assert signed["msg"] == (
        f"Patch sample-6.3.2 is already applied to {dist}; signed its manifest (serial 2) with "
        f"key {key.key_id}."
    )


def test_a_key_others_can_read_is_used_with_a_warning(dist, key_file):
    path, _key = key_file
    path.chmod(0o644)
    warnings = []
    params = {"dist_dir": dist, "patch": SAMPLE, "signing_key": str(path)}

    result = enterprise_patch.run(params, check_mode=False, diff=False, warn=warnings.append)

    assert result["signed"] is True
    assert warnings == [f"signing_key {path} can be read by other users (mode 0o644); chmod 600"]
