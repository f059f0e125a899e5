# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the ivr_service_files module: options, the action sequence, check and diff."""

import hashlib
import os

import pytest
import yaml

from ansible_collections.prairiefyre.updater.plugins.module_utils import tree
from ansible_collections.prairiefyre.updater.plugins.modules import ivr_service_files
from ansible_collections.prairiefyre.updater.tests.unit.helpers import read_tree, write_tree

OLD = {"version.txt": b"6.3.1.0\n", "Inbound.dll": b"dll-1", "old.cfg": b"cfg"}
NEW = {"version.txt": b"6.3.2.0\n", "Inbound.dll": b"dll-1", "lib/new.bin": b"new"}
FILES = {
    path: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    for path, data in NEW.items()
}


@pytest.fixture
def root(tmp_path):
    write_tree(str(tmp_path / "IVR" / "Inbound"), OLD)
    return str(tmp_path)


def args(root, action, drop=(), **extra):
    base = {
        "action": action,
        "module": "ivr_inbound",
        "install_root": root,
        "target": "IVR/Inbound",
        "files": FILES,
        "manifest_id": 1001,
        "version": "6.3.2.0",
    }
    base.update(extra)
    return {key: value for key, value in base.items() if key not in drop}


def test_documentation_agrees_with_the_argument_spec():
    options = yaml.safe_load(ivr_service_files.DOCUMENTATION)["options"]

    assert sorted(options) == sorted(ivr_service_files.ARGUMENT_SPEC)
    for name, spec in ivr_service_files.ARGUMENT_SPEC.items():
        doc = options[name]
        assert doc["type"] == spec["type"], name
        assert doc.get("default") == spec.get("default"), name
        assert doc.get("choices") == spec.get("choices"), name
        assert doc.get("required", False) == spec.get("required", False), name


def test_the_whole_update_through_the_module(run_module, root):
    target = os.path.join(root, "IVR", "Inbound")

    planned = run_module(ivr_service_files, args(root, "plan"))
    assert (planned["changed"], planned["changed_files"]) == (False, ["lib/new.bin", "version.txt"])
    write_tree(planned["staging_dir"], {path: NEW[path] for path in planned["changed_files"]})

    staged = run_module(ivr_service_files, args(root, "stage"))
    assert (staged["changed"], staged["linked_files"]) == (True, ["Inbound.dll"])

    swapped = run_module(ivr_service_files, args(root, "swap"))
    assert (swapped["failed"], swapped["changed"], read_tree(target)) == (False, True, NEW)

    again = run_module(ivr_service_files, args(root, "swap"))
    assert (again["changed"], again["msg"]) == (
        False,
        f"module ivr_inbound: {target} already has the manifest's files",
    )

    committed = run_module(ivr_service_files, args(root, "commit"))
    assert committed["msg"] == (
        "module ivr_inbound: recorded manifest ID 1001 (version 6.3.2.0); removed 1 staging entries"
    )
    assert run_module(ivr_service_files, args(root, "commit"))["changed"] is False

    final = run_module(ivr_service_files, args(root, "plan"))
    assert (final["changed"], final["up_to_date"], final["bytes_to_send"]) == (False, True, 0)


def test_a_check_mode_run_of_every_step_touches_nothing(run_module, root):
    before = read_tree(root)

    results = [
        run_module(ivr_service_files, args(root, action), check_mode=True)
        for action in ("plan", "stage", "swap", "commit")
    ]

    assert [(r["failed"], r["changed"]) for r in results] == [
        (False, False),
        (False, True),
        (False, True),
        (False, True),
    ]
    assert read_tree(root) == before
    assert not os.path.exists(os.path.join(root, ".updater"))


def test_swap_check_mode_with_diff(run_module, root):
    planned = run_module(ivr_service_files, args(root, "plan"))
    write_tree(planned["staging_dir"], {path: NEW[path] for path in planned["changed_files"]})
    run_module(ivr_service_files, args(root, "stage"))

    result = run_module(ivr_service_files, args(root, "swap"), check_mode=True, diff=True)

    assert result["changed"] is True
    assert result["diff"]["after"].splitlines() == [
        f"{FILES['lib/new.bin']['sha256']}           3  lib/new.bin",
        f"{FILES['version.txt']['sha256']}           8  version.txt",
    ]
    assert read_tree(os.path.join(root, "IVR", "Inbound")) == OLD


def test_swap_without_diff_returns_no_diff(run_module, root):
    planned = run_module(ivr_service_files, args(root, "plan"))
    write_tree(planned["staging_dir"], {path: NEW[path] for path in planned["changed_files"]})
    run_module(ivr_service_files, args(root, "stage"))

    assert "diff" not in run_module(ivr_service_files, args(root, "swap"), check_mode=True)


def test_rollback_through_the_module(run_module, root):
    planned = run_module(ivr_service_files, args(root, "plan"))
    write_tree(planned["staging_dir"], {path: NEW[path] for path in planned["changed_files"]})
    run_module(ivr_service_files, args(root, "stage"))
    run_module(ivr_service_files, args(root, "swap"))

    result = run_module(ivr_service_files, args(root, "rollback", drop=["files"]))

    assert (result["changed"], result["restored_id"]) == (True, None)
    assert read_tree(os.path.join(root, "IVR", "Inbound")) == OLD


BAD_CASES = [
    pytest.param(
        {"action": "plan", "drop": ["files"]},
        "action is plan but all of the following are missing: files",
        id="plan-without-files",
    ),
    pytest.param(
        {"action": "commit", "drop": ["version"]},
        "action is commit but all of the following are missing: version",
        id="commit-without-version",
    ),
    pytest.param(
        {"action": "swap", "expect_pids": {"ivr01_inbound": "4242x"}},
        "expect_pids: the process ID of ivr01_inbound must be a positive integer, got '4242x'",
        id="expect-pids-not-a-number",
    ),
    pytest.param(
        {"action": "swap", "expect_pids": {"ivr01_inbound": 0}},
        "expect_pids: the process ID of ivr01_inbound must be a positive integer, got 0",
        id="expect-pids-zero",
    ),
    pytest.param(
        {"action": "deploy"},
        "value of action must be one of: plan, stage, swap, rollback, commit, got: deploy",
        id="unknown-action",
    ),
    pytest.param(
        {"action": "rollback"},
        "nothing to roll back for module ivr_inbound: no backup in {root}/.updater/backup/"
        "ivr_inbound",
        id="nothing-to-roll-back",
    ),
    pytest.param(
        {"action": "swap"},
        "cannot swap module ivr_inbound: {root}/.updater/staging/ivr_inbound-1001 does not "
        "exist; run stage for manifest ID 1001 first",
        id="swap-before-stage",
    ),
    pytest.param(
        {"action": "swap", "keep_backups": 0},
        "keep_backups: expected an integer >= 1 (a swap must leave a backup to roll back to), "
        "got 0",
        id="keep-no-backup",
    ),
    pytest.param(
        {"action": "stage", "files": {"../../etc/passwd": {"size": 1, "sha256": "0" * 64}}},
        'files["../../etc/passwd"]: expected a safe relative path, got "../../etc/passwd" (it '
        'climbs out with "..")',
        id="path-escapes",
    ),
    pytest.param(
        {"action": "plan", "files": {"a.dll": {"size": 1, "sha256": "XYZ"}}},
        'files["a.dll"].sha256: expected 64 lowercase hex digits, got "XYZ"',
        id="bad-sha256",
    ),
    pytest.param(
        {"action": "swap", "services": ["ivr01_inbound"]},
        "missing parameter(s) required by 'services': manager",
        id="services-without-manager",
    ),
    pytest.param(
        {"action": "swap", "services": ["ivr01_inbound"], "manager": "supervisord"},
        "manager is supervisord but all of the following are missing: supervisor_config",
        id="supervisord-without-config",
    ),
    pytest.param(
        {"action": "plan", "install_root": "relative"},
        'install_root "relative" is not an absolute path',
        id="relative-root",
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(("changes", "message"), BAD_CASES)
def test_bad_input_fails_with_one_sentence(run_module, root, changes, message):
    result = run_module(ivr_service_files, args(root, **changes))

    assert result["failed"] is True
    assert result["msg"] == message.format(root=root)


@pytest.mark.bad_input
def test_a_held_lock_fails_the_run(run_module, root):
    layout = tree.Layout(root, "ivr_inbound", "IVR/Inbound", 1001)

    with tree.module_lock(layout):
        result = run_module(ivr_service_files, args(root, "stage"))

    assert result["msg"] == (
        f"another updater run holds {root}/.updater/locks/ivr_inbound.lock; module ivr_inbound "
        "is busy"
    )
