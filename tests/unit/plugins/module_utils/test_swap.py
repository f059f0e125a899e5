# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of plan, stage, swap, rollback, commit and crash repair (module_utils/swap.py and
the compare, staging, journal and tree helpers it builds on).

Every case builds a small install root in tmp_path: module ivr_inbound in IVR/Inbound with the
OLD files installed, and a manifest (ID 1001) of the NEW files.
"""

import errno
import hashlib
import json
import os
import re

import pytest

from ansible_collections.prairiefyre.updater.plugins.module_utils import (
    compare,
    journal,
    manifest,
    staging,
    swap,
    tree,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import (
    ManifestError,
    PathError,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.tree import SwapError, VerifyError
from ansible_collections.prairiefyre.updater.tests.unit.helpers import read_tree, write_tree

MODULE = "ivr_inbound"
TARGET = "IVR/Inbound"
OLD = {"version.txt": b"6.3.1.0\n", "Inbound.dll": b"dll-1", "old.cfg": b"cfg"}
NEW = {"version.txt": b"6.3.2.0\n", "Inbound.dll": b"dll-1", "lib/new.bin": b"new"}
MARGIN = staging.FREE_SPACE_MARGIN


def sha(data):
    return hashlib.sha256(data).hexdigest()


def manifest_of(contents):
    return {path: {"size": len(data), "sha256": sha(data)} for path, data in contents.items()}


class Crash(BaseException):
    """Stands for the process dying: nothing in swap.py catches it."""


@pytest.fixture
def root(tmp_path):
    install = tmp_path / "install"
    write_tree(str(install / "IVR" / "Inbound"), OLD)
    return str(install)


def layout_of(root, manifest_id=1001):
    return tree.Layout(root, MODULE, TARGET, manifest_id)


@pytest.fixture
def layout(root):
    return layout_of(root)


def send(layout, contents=None):
    """What the role does after plan: copy the listed files into the staging directory."""
    if contents is None:
        contents = NEW
    planned = compare.plan(layout, manifest_of(contents))
    write_tree(planned["staging_dir"], {path: contents[path] for path in planned["changed_files"]})
    return planned


def staged(layout, contents=None):
    if contents is None:
        contents = NEW
    send(layout, contents)
    return staging.stage(layout, manifest_of(contents), "6.3.2.0")


def crash_on_move(monkeypatch, call, exchange=False):
    """Let swap.py make ``call - 1`` renames, then die on the next one."""
    calls = []
    real_move = journal.move

    def move(src, dst):
        calls.append((src, dst))
        if len(calls) == call:
            raise Crash()
        real_move(src, dst)

    monkeypatch.setattr(journal, "move", move)
    if not exchange:
        monkeypatch.setattr(journal, "exchange", lambda first, second: False)


# --- the layout ------------------------------------------------------------------------------


def _relative_root(tmp):
    return "relative/root", TARGET, 'install_root "relative/root" is not an absolute path'


def _missing_root(tmp):
    return f"{tmp}/nowhere", TARGET, f"install_root {tmp}/nowhere is not an existing directory"


def _target_in_state(tmp):
    return (
        f"{tmp}/install",
        ".updater/staging",
        ('target: expected a directory outside ".updater", got ".updater/staging"'),
    )


def _target_escapes(tmp):
    return (
        f"{tmp}/install",
        "../outside",
        ('target: expected a safe relative path, got "../outside" (it climbs out with "..")'),
    )


def _target_symlink(tmp):
    os.makedirs(f"{tmp}/install/IVR/Real")
    os.symlink(f"{tmp}/install/IVR/Real", f"{tmp}/install/IVR/Linked")
    return (
        f"{tmp}/install",
        "IVR/Linked",
        (f"target {tmp}/install/IVR/Linked is a symlink; the updater swaps real directories only"),
    )


def _target_parent_outside(tmp):
    os.makedirs(f"{tmp}/elsewhere")
    os.symlink(f"{tmp}/elsewhere", f"{tmp}/install/IVR")
    return (
        f"{tmp}/install",
        TARGET,
        (
            f"target {tmp}/install/IVR/Inbound resolves to {tmp}/elsewhere, outside the install "
            f"root {tmp}/install"
        ),
    )


def _state_symlink(tmp):
    os.makedirs(f"{tmp}/state")
    os.symlink(f"{tmp}/state", f"{tmp}/install/.updater")
    return (
        f"{tmp}/install",
        TARGET,
        (
            f"{tmp}/install/.updater is a symlink; the updater keeps its state in a real directory "
            "on the install's filesystem"
        ),
    )


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "case",
    [
        _relative_root,
        _missing_root,
        _target_in_state,
        _target_escapes,
        _target_symlink,
        _target_parent_outside,
        _state_symlink,
    ],
)
def test_layout_refuses(tmp_path, case):
    tmp = os.path.realpath(tmp_path)
    os.makedirs(f"{tmp}/install", exist_ok=True)
    install_root, target, message = case(tmp)

    with pytest.raises((PathError, ManifestError)) as caught:
        tree.Layout(install_root, MODULE, target, 1001)

    assert str(caught.value) == message


@pytest.mark.bad_input
def test_layout_refuses_a_bad_module_name(root):
    with pytest.raises(ManifestError) as caught:
        tree.Layout(root, "IVR Inbound", TARGET, 1001)

    assert str(caught.value) == (
        "module: expected a name of lowercase letters, digits and _ that starts with a letter, "
        'got "IVR Inbound"'
    )


# --- plan ------------------------------------------------------------------------------------

PLAN_CASES = [
    pytest.param(OLD, {}, (["lib/new.bin", "version.txt"], ["old.cfg"], 11, False), id="fresh"),
    pytest.param(NEW, {}, ([], [], 0, True), id="up-to-date"),
    pytest.param(
        None, {}, (["Inbound.dll", "lib/new.bin", "version.txt"], [], 16, False), id="no-target"
    ),
    pytest.param(
        OLD,
        {"version.txt": NEW["version.txt"]},
        (["lib/new.bin"], ["old.cfg"], 3, False),
        id="partly-staged",
    ),
    pytest.param(
        OLD,
        {"version.txt": b"6.3.2.X\n", "lib/new.bin": b"ne"},
        (["lib/new.bin", "version.txt"], ["old.cfg"], 11, False),
        id="staged-wrong",
    ),
    pytest.param(
        dict(NEW, **{"Inbound.dll": b"dll-2"}),
        {},
        (["Inbound.dll"], [], 5, False),
        id="same-size-other-content",
    ),
    pytest.param(
        dict(NEW, **{"logs/today.log": b"x"}), {}, ([], ["logs/today.log"], 0, False), id="extra"
    ),
]


@pytest.mark.parametrize(("installed", "staged_files", "expected"), PLAN_CASES)
def test_plan(tmp_path, installed, staged_files, expected):
    root = str(tmp_path)
    if installed is not None:
        write_tree(os.path.join(root, "IVR", "Inbound"), installed)
    layout = layout_of(root)
    write_tree(layout.staging, staged_files)

    result = compare.plan(layout, manifest_of(NEW))

    got = (
        result["changed_files"],
        result["removed_files"],
        result["bytes_to_send"],
        result["up_to_date"],
    )
    assert got == expected
    assert (result["changed"], result["repaired"]) == (False, None)
    assert result["staging_dir"] == os.path.join(root, ".updater", "staging", "ivr_inbound-1001")
    assert not os.path.exists(os.path.join(root, ".updater", "locks"))


def test_plan_messages(layout, root):
    assert compare.plan(layout, manifest_of(NEW))["msg"] == (
        f"module ivr_inbound: 2 of 3 files differ in {root}/IVR/Inbound, 2 to send (11 bytes), "
        "1 to remove"
    )

    write_tree(layout.target, NEW)
    os.unlink(os.path.join(layout.target, "old.cfg"))

    assert compare.plan(layout, manifest_of(NEW))["msg"] == (
        f"module ivr_inbound: {root}/IVR/Inbound already has the manifest's files"
    )


def test_plan_follows_a_symlink_inside_the_install_root(layout, root):
    write_tree(os.path.join(root, "shared"), {"Inbound.dll": NEW["Inbound.dll"]})
    os.unlink(os.path.join(layout.target, "Inbound.dll"))
    os.symlink(
        os.path.join(root, "shared", "Inbound.dll"), os.path.join(layout.target, "Inbound.dll")
    )

    assert compare.plan(layout, manifest_of(NEW))["changed_files"] == ["lib/new.bin", "version.txt"]


# --- stage -----------------------------------------------------------------------------------


def test_stage_links_the_unchanged_files_and_writes_the_marker(layout):
    send(layout)

    result = staging.stage(layout, manifest_of(NEW), "6.3.2.0")

    assert result == {
        "changed": True,
        "staging_dir": layout.staging,
        "marker": layout.marker,
        "linked_files": ["Inbound.dll"],
        "copied_files": [],
        "missing_files": [],
        "verified_files": 3,
        "repaired": None,
        "msg": f"module ivr_inbound: staged 3 files in {layout.staging} (1 linked, 0 copied from "
        "the installed tree) and verified every sha256",
    }
    assert read_tree(layout.staging) == NEW
    installed = os.stat(os.path.join(layout.target, "Inbound.dll"))
    assert os.stat(os.path.join(layout.staging, "Inbound.dll")).st_ino == installed.st_ino

    with open(layout.marker, encoding="utf-8") as handle:
        marker = json.load(handle)
    assert (marker["module"], marker["manifest_id"], marker["version"]) == (MODULE, 1001, "6.3.2.0")
    assert {path: (e["size"], e["sha256"]) for path, e in marker["files"].items()} == {
        path: (e["size"], e["sha256"]) for path, e in manifest_of(NEW).items()
    }


def test_stage_is_idempotent(layout):
    staged(layout)

    result = staging.stage(layout, manifest_of(NEW), "6.3.2.0")

    assert (result["changed"], result["verified_files"]) == (False, 0)
    assert result["msg"] == f"module ivr_inbound: {layout.staging} is already staged and verified"


def test_stage_verifies_again_after_a_staged_file_was_replaced(layout):
    staged(layout)
    write_tree(layout.staging, {"version.txt": NEW["version.txt"]})

    result = staging.stage(layout, manifest_of(NEW), "6.3.2.0")

    assert (result["changed"], result["verified_files"]) == (True, 3)


def test_stage_copies_where_hardlinks_fail(layout, monkeypatch):
    send(layout)

    def no_link(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link", src)

    monkeypatch.setattr(os, "link", no_link)
    result = staging.stage(layout, manifest_of(NEW), "6.3.2.0")

    assert (result["linked_files"], result["copied_files"]) == ([], ["Inbound.dll"])
    assert read_tree(layout.staging) == NEW


def test_stage_check_mode_touches_nothing(layout):
    send(layout)

    result = staging.stage(layout, manifest_of(NEW), "6.3.2.0", check_mode=True)

    assert (result["changed"], result["linked_files"]) == (True, ["Inbound.dll"])
    assert result["msg"] == (
        f"module ivr_inbound: would link 1 installed files into {layout.staging} and verify 3"
    )
    assert sorted(read_tree(layout.staging)) == ["lib/new.bin", "version.txt"]
    assert not os.path.exists(layout.marker)


def test_stage_check_mode_lists_what_plan_would_have_sent(layout):
    result = staging.stage(layout, manifest_of(NEW), "6.3.2.0", check_mode=True)

    assert (result["changed"], result["missing_files"]) == (True, ["lib/new.bin", "version.txt"])
    assert result["msg"] == (
        f"module ivr_inbound: would link 1 installed files into {layout.staging} and verify 3, "
        "once the 2 files plan lists are sent"
    )
    assert not os.path.exists(layout.state)


def _checksum_mismatch(layout):
    wrong = b"6.3.2.X\n"
    write_tree(layout.staging, {"version.txt": wrong})
    return VerifyError, (
        f"staged file {layout.staging}/version.txt has sha256 {sha(wrong)}, the manifest says "
        f"{sha(NEW['version.txt'])}; send it again"
    )


def _truncated(layout):
    write_tree(layout.staging, {"version.txt": b"6.3"})
    return VerifyError, (
        f"staged file {layout.staging}/version.txt has 3 bytes, the manifest says 8 (an "
        "incomplete transfer); send it again"
    )


def _extra_staged(layout):
    write_tree(layout.staging, {"extra.txt": b"?"})
    return VerifyError, (
        f"staged file {layout.staging}/extra.txt is not in the manifest of module ivr_inbound; "
        f"remove it from {layout.staging}"
    )


def _symlink_staged(layout):
    os.unlink(os.path.join(layout.staging, "lib", "new.bin"))
    os.symlink("/etc/hostname", os.path.join(layout.staging, "lib", "new.bin"))
    return PathError, (
        f"staged path {layout.staging}/lib/new.bin is a symlink; a staging tree holds regular "
        "files only"
    )


def _symlink_out_of_root(layout):
    os.symlink("/etc/hostname", os.path.join(layout.target, "evil.cfg"))
    return PathError, (
        f"{layout.target}/evil.cfg is a symlink to {os.path.realpath('/etc/hostname')}, outside "
        f"the install root {layout.root_real}"
    )


def _fifo_in_target(layout):
    os.mkfifo(os.path.join(layout.target, "pipe"))
    return PathError, f"{layout.target}/pipe is neither a regular file nor a directory"


def _not_sent(layout):
    os.unlink(os.path.join(layout.staging, "lib", "new.bin"))
    return VerifyError, (
        f"file lib/new.bin of module ivr_inbound is neither staged in {layout.staging} nor "
        "installed with the manifest's content; send it first (plan lists it)"
    )


def _disk_full(layout, monkeypatch):
    monkeypatch.setattr(staging, "free_bytes", lambda path: 1000)
    return SwapError, (
        f"cannot stage module ivr_inbound: {layout.staging} has 1000 bytes free and staging "
        f"needs {MARGIN} (a {MARGIN}-byte margin included)"
    )


STAGE_BAD_CASES = [
    _checksum_mismatch,
    _truncated,
    _extra_staged,
    _symlink_staged,
    _symlink_out_of_root,
    _fifo_in_target,
    _not_sent,
]


@pytest.mark.bad_input
@pytest.mark.parametrize("case", STAGE_BAD_CASES)
def test_stage_refuses(layout, case):
    send(layout)
    error, message = case(layout)

    with pytest.raises(error) as caught:
        staging.stage(layout, manifest_of(NEW), "6.3.2.0")

    assert str(caught.value) == message
    assert not os.path.exists(layout.marker)


@pytest.mark.bad_input
def test_stage_refuses_a_full_disk(layout, monkeypatch):
    send(layout)
    error, message = _disk_full(layout, monkeypatch)

    with pytest.raises(error) as caught:
        staging.stage(layout, manifest_of(NEW), "6.3.2.0")

    assert str(caught.value) == message


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "../escape.txt",
            'files["../escape.txt"]: expected a safe relative path, got "../escape.txt" (it climbs '
            'out with "..")',
        ),
        (
            "/etc/passwd",
            'files["/etc/passwd"]: expected a safe relative path, got "/etc/passwd" (it is '
            "absolute)",
        ),
        (
            "lib\\new.bin",
            'files["lib\\\\new.bin"]: expected a safe relative path, got "lib\\\\new.bin" (it '
            "contains a backslash; separate directories with /)",
        ),
    ],
)
@pytest.mark.parametrize("action", ["plan", "stage", "swap"])
def test_paths_that_leave_the_target_are_refused(layout, action, path, message):
    files = dict(manifest_of(NEW), **{path: {"size": 1, "sha256": sha(b"x")}})
    call = {
        "plan": lambda: compare.plan(layout, files),
        "stage": lambda: staging.stage(layout, files),
        "swap": lambda: swap.swap(layout, files),
    }[action]

    with pytest.raises(ManifestError) as caught:
        call()

    assert str(caught.value) == message


# --- swap ------------------------------------------------------------------------------------

BACKUP_NAME = re.compile(r"^\d{8}T\d{12}Z-unknown$")


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_swap_puts_the_staged_tree_in_place(layout, monkeypatch, exchange):
    if exchange and journal._renameat2() is None:
        pytest.skip("renameat2 is not available here")
    if not exchange:
        monkeypatch.setattr(journal, "exchange", lambda first, second: False)
    staged(layout)

    result = swap.swap(layout, manifest_of(NEW))

    backup = result["backup"]
    assert BACKUP_NAME.match(os.path.basename(backup))
    assert result == {
        "changed": True,
        "changed_files": ["lib/new.bin", "version.txt"],
        "removed_files": ["old.cfg"],
        "backup": backup,
        "repaired": None,
        "msg": "module ivr_inbound: swapped in manifest ID 1001 (2 files replaced, 1 removed); "
        f"the old tree is in {backup}",
    }
    assert read_tree(layout.target) == NEW
    assert read_tree(backup) == OLD
    assert not os.path.exists(layout.staging)
    assert not os.path.exists(layout.journal)
    with open(backup + ".json", encoding="utf-8") as handle:
        meta = json.load(handle)
    assert (meta["old_id"], meta["old_version"], meta["new_id"]) == (None, None, 1001)


def test_swap_is_idempotent(layout):
    staged(layout)
    swap.swap(layout, manifest_of(NEW))

    result = swap.swap(layout, manifest_of(NEW))

    assert (result["changed"], result["backup"]) == (False, None)
    assert result["msg"] == f"module ivr_inbound: {layout.target} already has the manifest's files"
    assert len(journal.list_backups(layout)) == 1


def test_swap_of_a_tree_that_already_matches_needs_no_staging(layout):
    write_tree(layout.target, NEW)
    os.unlink(os.path.join(layout.target, "old.cfg"))

    result = swap.swap(layout, manifest_of(NEW))

    assert result["changed"] is False


def test_swap_check_mode_and_diff(layout):
    staged(layout)
    before_target = read_tree(layout.target)

    result = swap.swap(layout, manifest_of(NEW), check_mode=True, want_diff=True)

    assert (result["changed"], result["backup"]) == (True, None)
    assert result["msg"] == (
        f"module ivr_inbound: would replace 2 and remove 1 files in {layout.target}"
    )
    assert result["diff"] == {
        "before_header": f"{layout.target} (installed)",
        "after_header": f"{layout.target} (manifest ID 1001)",
        "before": f"{sha(b'cfg')}           3  old.cfg\n"
        f"{sha(OLD['version.txt'])}           8  version.txt\n",
        "after": f"{sha(b'new')}           3  lib/new.bin\n"
        f"{sha(NEW['version.txt'])}           8  version.txt\n",
    }
    assert read_tree(layout.target) == before_target
    assert os.path.isdir(layout.staging)
    assert journal.list_backups(layout) == []


def test_swap_check_mode_before_anything_was_staged(layout):
    result = swap.swap(layout, manifest_of(NEW), check_mode=True)

    assert (result["changed"], result["changed_files"]) == (True, ["lib/new.bin", "version.txt"])
    assert result["msg"] == (
        f"module ivr_inbound: would replace 2 and remove 1 files in {layout.target} once "
        f"{layout.staging} is staged and verified"
    )
    assert not os.path.exists(layout.state)


def test_swap_names_the_backup_after_the_recorded_id(root):
    manifest.record_module(root, MODULE, 1000, "6.3.1.0")
    layout = layout_of(root)
    staged(layout)

    result = swap.swap(layout, manifest_of(NEW))

    assert result["backup"].endswith("Z-1000")
    with open(result["backup"] + ".json", encoding="utf-8") as handle:
        meta = json.load(handle)
    assert (meta["old_id"], meta["old_version"], meta["new_id"]) == (1000, "6.3.1.0", 1001)


def test_swap_keeps_only_keep_backups(root):
    for manifest_id in (1001, 1002, 1003):
        layout = layout_of(root, manifest_id)
        contents = dict(NEW, **{"version.txt": f"6.3.{manifest_id}\n".encode()})
        staged(layout, contents)
        swap.swap(layout, manifest_of(contents), keep_backups=2)
        swap.commit(layout, "6.3.2.0")

    backups = journal.list_backups(layout)
    assert [os.path.basename(path).split("-")[1] for path in backups] == ["1001", "1002"]
    assert sorted(os.listdir(layout.backup_root)) == sorted(
        [os.path.basename(path) for path in backups]
        + [os.path.basename(p) + ".json" for p in backups]
    )


def _no_staging(layout):
    return SwapError, (
        f"cannot swap module ivr_inbound: {layout.staging} does not exist; run stage for "
        "manifest ID 1001 first"
    )


def _no_marker(layout):
    send(layout)
    return VerifyError, (
        f"cannot swap module ivr_inbound: the marker {layout.marker} is missing; run stage again"
    )


def _changed_after_stage(layout):
    staged(layout)
    write_tree(layout.staging, {"version.txt": b"6.3.2.X\n"})
    return VerifyError, (
        f"cannot swap module ivr_inbound: {layout.staging}/version.txt changed since it was "
        "verified; run stage again"
    )


def _truncated_after_stage(layout):
    staged(layout)
    with open(os.path.join(layout.staging, "lib", "new.bin"), "r+b") as handle:
        handle.truncate(1)
    return VerifyError, (
        f"cannot swap module ivr_inbound: {layout.staging}/lib/new.bin changed since it was "
        "verified; run stage again"
    )


def _removed_after_stage(layout):
    staged(layout)
    os.unlink(os.path.join(layout.staging, "lib", "new.bin"))
    return VerifyError, (
        f"cannot swap module ivr_inbound: {layout.staging}/lib/new.bin is missing; run stage again"
    )


def _added_after_stage(layout):
    staged(layout)
    write_tree(layout.staging, {"surprise.dll": b"!"})
    return VerifyError, (
        f"cannot swap module ivr_inbound: {layout.staging}/surprise.dll is not in the manifest; "
        "run stage again"
    )


def _marker_of_other_files(layout):
    staged(layout)
    with open(layout.marker, encoding="utf-8") as handle:
        marker = json.load(handle)
    marker["files"]["version.txt"]["sha256"] = sha(b"other")
    with open(layout.marker, "w", encoding="utf-8") as handle:
        json.dump(marker, handle)
    return VerifyError, (
        f"cannot swap module ivr_inbound: the marker {layout.marker} was written for other "
        "files; run stage again"
    )


def _marker_garbage(layout):
    staged(layout)
    with open(layout.marker, "w", encoding="utf-8") as handle:
        handle.write("{not json")
    return VerifyError, (
        f"cannot swap module ivr_inbound: the marker {layout.marker} was written for other "
        "files; run stage again"
    )


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "case",
    [
        _no_staging,
        _no_marker,
        _changed_after_stage,
        _truncated_after_stage,
        _removed_after_stage,
        _added_after_stage,
        _marker_of_other_files,
        _marker_garbage,
    ],
)
def test_swap_refuses(layout, case):
    error, message = case(layout)

    with pytest.raises(error) as caught:
        swap.swap(layout, manifest_of(NEW))

    assert str(caught.value) == message
    assert read_tree(layout.target) == OLD
    assert journal.list_backups(layout) == []


@pytest.mark.bad_input
@pytest.mark.parametrize("keep", [0, -1, True])
def test_swap_refuses_keep_backups_below_one(layout, keep):
    with pytest.raises(SwapError) as caught:
        swap.swap(layout, manifest_of(NEW), keep_backups=keep)

    assert str(caught.value) == (
        "keep_backups: expected an integer >= 1 (a swap must leave a backup to roll back to), "
        f"got {json.dumps(keep)}"
    )


def test_swap_into_a_missing_target(tmp_path):
    layout = layout_of(str(tmp_path))
    staged(layout)

    result = swap.swap(layout, manifest_of(NEW))

    assert read_tree(layout.target) == NEW
    assert read_tree(result["backup"]) == {}


# --- crash repair ----------------------------------------------------------------------------

REPAIR_CASES = [
    pytest.param(
        2,
        False,
        "repaired an interrupted swap of module ivr_inbound that had moved the old tree aside; "
        "moved the new one into place",
        id="between-the-two-renames",
    ),
    pytest.param(
        1,
        True,
        "repaired an interrupted swap of module ivr_inbound that had exchanged the trees; moved "
        "the old one aside",
        id="after-the-exchange",
    ),
]


@pytest.mark.parametrize(("call", "exchange", "message"), REPAIR_CASES)
def test_crash_during_swap_is_finished_by_the_next_plan(
    layout, monkeypatch, call, exchange, message
):
    if exchange and journal._renameat2() is None:
        pytest.skip("renameat2 is not available here")
    staged(layout)
    with monkeypatch.context() as patch:
        crash_on_move(patch, call, exchange=exchange)
        with pytest.raises(Crash):
            swap.swap(layout, manifest_of(NEW))
    assert os.path.exists(layout.journal)

    result = compare.plan(layout, manifest_of(NEW))

    assert (result["changed"], result["repaired"], result["up_to_date"]) == (True, message, True)
    assert result["msg"] == (
        f"module ivr_inbound: {layout.target} already has the manifest's files; {message}"
    )
    assert read_tree(layout.target) == NEW
    [backup] = journal.list_backups(layout)
    assert read_tree(backup) == OLD
    assert os.path.exists(backup + ".json")
    assert not os.path.exists(layout.journal)
    assert not os.path.exists(layout.staging)


def test_crash_between_renames_is_shown_in_check_mode_only(layout, monkeypatch):
    staged(layout)
    with monkeypatch.context() as patch:
        crash_on_move(patch, 2)
        with pytest.raises(Crash):
            swap.swap(layout, manifest_of(NEW))

    result = compare.plan(layout, manifest_of(NEW), check_mode=True)

    assert (result["changed"], result["repaired"]) == (
        False,
        "found an interrupted swap of module ivr_inbound that had moved the old tree aside; a "
        "run without check mode repairs it",
    )
    assert not os.path.exists(layout.target)
    assert os.path.exists(layout.journal)


REPAIRING_ACTIONS = [
    pytest.param(lambda layout: swap.swap(layout, manifest_of(NEW)), NEW, id="swap"),
    pytest.param(lambda layout: staging.stage(layout, manifest_of(NEW)), NEW, id="stage"),
    pytest.param(lambda layout: swap.commit(layout, "6.3.2.0", manifest_of(NEW)), NEW, id="commit"),
    pytest.param(swap.rollback, OLD, id="rollback"),
]


@pytest.mark.parametrize(("action", "final"), REPAIRING_ACTIONS)
def test_crash_between_renames_is_repaired_by_every_action(layout, monkeypatch, action, final):
    staged(layout)
    with monkeypatch.context() as patch:
        crash_on_move(patch, 2)
        with pytest.raises(Crash):
            swap.swap(layout, manifest_of(NEW))

    result = action(layout)

    assert result["repaired"] == (
        "repaired an interrupted swap of module ivr_inbound that had moved the old tree aside; "
        "moved the new one into place"
    )
    assert read_tree(layout.target) == final
    assert not os.path.exists(layout.journal)


def test_crash_before_the_first_rename_drops_the_journal(layout, monkeypatch):
    staged(layout)
    with monkeypatch.context() as patch:
        crash_on_move(patch, 1)
        with pytest.raises(Crash):
            swap.swap(layout, manifest_of(NEW))

    result = swap.swap(layout, manifest_of(NEW))

    assert result["repaired"] == (
        "repaired an interrupted swap of module ivr_inbound that had not started; nothing was moved"
    )
    assert result["changed"] is True
    assert read_tree(layout.target) == NEW
    assert len(journal.list_backups(layout)) == 1


@pytest.mark.bad_input
def test_crash_repair_refuses_a_state_it_cannot_explain(layout, monkeypatch):
    staged(layout)
    with monkeypatch.context() as patch:
        crash_on_move(patch, 2)
        with pytest.raises(Crash):
            swap.swap(layout, manifest_of(NEW))
    with open(layout.journal, encoding="utf-8") as handle:
        aside = json.load(handle)["aside"]
    os.rename(aside, aside + "-moved-by-hand")

    with pytest.raises(SwapError) as caught:
        compare.plan(layout, manifest_of(NEW))

    assert str(caught.value) == (
        f"an interrupted swap of module ivr_inbound left {layout.target}, {layout.staging} and "
        f"{aside} in a state the journal {layout.journal} does not explain; restore the target "
        "by hand and delete the journal"
    )


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{half", "is unreadable (Expecting property name enclosed in double quotes: line 1 "),
        ('{"format": 1, "op": "swap", "target": "/elsewhere"}', "does not describe"),
        # A journal that holds no object is damaged, not absent: nothing may run past it.
        ("null", "is unreadable (it holds null, not a JSON object)"),
        ("[]", "is unreadable (it holds a list, not a JSON object)"),
    ],
    ids=["truncated", "other-target", "null", "list"],
)
def test_a_broken_journal_stops_every_action(layout, content, reason):
    os.makedirs(os.path.dirname(layout.journal))
    with open(layout.journal, "w", encoding="utf-8") as handle:
        handle.write(content)

    with pytest.raises(SwapError) as caught:
        compare.plan(layout, manifest_of(NEW))

    assert str(caught.value).startswith(f"journal {layout.journal} {reason}")


# --- rollback --------------------------------------------------------------------------------


def test_rollback_restores_the_newest_backup(layout):
    staged(layout)
    backup = swap.swap(layout, manifest_of(NEW))["backup"]

    result = swap.rollback(layout)

    failed = os.path.join(layout.root, ".updater", "failed", "ivr_inbound-1001")
    assert result == {
        "changed": True,
        "backup": backup,
        "failed_dir": failed,
        "restored_id": None,
        "repaired": None,
        "msg": f"module ivr_inbound: restored {backup} to {layout.target}; the rolled-back tree "
        f"is in {failed}",
    }
    assert read_tree(layout.target) == OLD
    assert read_tree(failed) == NEW
    assert journal.list_backups(layout) == []
    assert not os.path.exists(backup + ".json")
    assert not os.path.exists(layout.marker)


@pytest.mark.parametrize(
    ("committed", "record_after"),
    [
        pytest.param(False, {"manifest_id": 1000, "version": "6.3.1.0"}, id="before-commit"),
        pytest.param(True, {"manifest_id": 1000, "version": "6.3.1.0"}, id="after-commit"),
    ],
)
def test_rollback_puts_the_record_back(root, committed, record_after):
    manifest.record_module(root, MODULE, 1000, "6.3.1.0")
    layout = layout_of(root)
    staged(layout)
    swap.swap(layout, manifest_of(NEW))
    if committed:
        swap.commit(layout, "6.3.2.0")

    result = swap.rollback(layout)

    entry = manifest.load_record(manifest.record_path(root))["modules"][MODULE]
    assert {"manifest_id": entry["manifest_id"], "version": entry["version"]} == record_after
    assert result["restored_id"] == 1000


def test_rollback_after_commit_forgets_a_module_that_had_no_record(layout, root):
    staged(layout)
    swap.swap(layout, manifest_of(NEW))
    swap.commit(layout, "6.3.2.0")

    swap.rollback(layout)

    assert manifest.load_record(manifest.record_path(root))["modules"] == {}


def test_rollback_check_mode_touches_nothing(layout):
    staged(layout)
    backup = swap.swap(layout, manifest_of(NEW))["backup"]

    result = swap.rollback(layout, check_mode=True)

    assert result["msg"] == f"module ivr_inbound: would restore {backup} to {layout.target}"
    assert read_tree(layout.target) == NEW
    assert journal.list_backups(layout) == [backup]


def test_crash_during_rollback_is_finished_by_the_repeated_rollback(layout, monkeypatch):
    staged(layout)
    swap.swap(layout, manifest_of(NEW))
    with monkeypatch.context() as patch:
        crash_on_move(patch, 2)
        with pytest.raises(Crash):
            swap.rollback(layout)
    assert not os.path.exists(layout.target)

    result = swap.rollback(layout)

    assert result["repaired"] == (
        "repaired an interrupted rollback of module ivr_inbound that had moved the old tree "
        "aside; moved the new one into place"
    )
    assert result["changed"] is True
    assert read_tree(layout.target) == OLD
    assert not os.path.exists(layout.journal)


def _nothing_swapped(layout):
    return (
        f"nothing to roll back for module ivr_inbound: no backup in {layout.backup_root}",
        layout,
    )


def _rolled_back_already(layout):
    staged(layout)
    swap.swap(layout, manifest_of(NEW))
    swap.rollback(layout)
    return (
        f"nothing to roll back for module ivr_inbound: no backup in {layout.backup_root}",
        layout,
    )


def _backup_of_another_id(layout):
    staged(layout)
    backup = swap.swap(layout, manifest_of(NEW))["backup"]
    return (
        f"nothing to roll back for module ivr_inbound at manifest ID 1002: the newest backup "
        f"{backup} was taken by the swap to ID 1001",
        layout_of(layout.root, 1002),
    )


@pytest.mark.bad_input
@pytest.mark.parametrize("case", [_nothing_swapped, _rolled_back_already, _backup_of_another_id])
def test_rollback_refuses(layout, case):
    message, rollback_layout = case(layout)
    before = read_tree(layout.target)

    with pytest.raises(SwapError) as caught:
        swap.rollback(rollback_layout)

    assert str(caught.value) == message
    assert read_tree(layout.target) == before


def test_rollback_without_an_id_takes_the_newest_backup(layout, root):
    staged(layout)
    backup = swap.swap(layout, manifest_of(NEW))["backup"]

    result = swap.rollback(layout_of(root, None))

    assert (result["backup"], read_tree(layout.target)) == (backup, OLD)


# --- commit ----------------------------------------------------------------------------------


def test_commit_records_the_id_and_cleans_up(layout, root):
    staged(layout)
    swap.swap(layout, manifest_of(NEW))
    older = layout_of(root, 999)
    write_tree(older.staging, {"x": b"1"})
    write_tree(layout_of(root, 1002).staging, {"x": b"2"})
    write_tree(os.path.join(layout.staging_root, "ivr_outbound-5"), {"x": b"3"})

    result = swap.commit(layout, "6.3.2.0", manifest_of(NEW))

    assert result == {
        "changed": True,
        "record": os.path.join(root, ".updater", "manifest.json"),
        "removed_staging": [layout.marker, older.staging],
        "repaired": None,
        "msg": "module ivr_inbound: recorded manifest ID 1001 (version 6.3.2.0); removed 2 staging "
        "entries",
    }
    assert sorted(os.listdir(layout.staging_root)) == ["ivr_inbound-1002", "ivr_outbound-5"]
    entry = manifest.load_record(result["record"])["modules"][MODULE]
    assert (entry["manifest_id"], entry["version"]) == (1001, "6.3.2.0")


def test_commit_is_idempotent(layout):
    staged(layout)
    swap.swap(layout, manifest_of(NEW))
    swap.commit(layout, "6.3.2.0")

    result = swap.commit(layout, "6.3.2.0", manifest_of(NEW))

    assert (result["changed"], result["removed_staging"]) == (False, [])
    assert result["msg"] == (
        "module ivr_inbound: manifest ID 1001 (version 6.3.2.0) was already recorded"
    )


def test_commit_check_mode_writes_nothing(layout, root):
    staged(layout)
    swap.swap(layout, manifest_of(NEW))

    result = swap.commit(layout, "6.3.2.0", check_mode=True)

    assert (result["changed"], result["removed_staging"]) == (True, [layout.marker])
    assert not os.path.exists(manifest.record_path(root))
    assert os.path.exists(layout.marker)


def test_commit_check_mode_does_not_expect_the_swap_to_have_happened(layout, root):
    result = swap.commit(layout, "6.3.2.0", manifest_of(NEW), check_mode=True)

    assert (result["changed"], result["removed_staging"]) == (True, [])
    assert not os.path.exists(layout.state)


@pytest.mark.bad_input
def test_commit_refuses_files_that_are_not_installed(layout, root):
    with pytest.raises(VerifyError) as caught:
        swap.commit(layout, "6.3.2.0", manifest_of(NEW))

    assert str(caught.value) == (
        f"cannot record manifest ID 1001 for module ivr_inbound: {layout.target}/lib/new.bin does "
        "not match the manifest (2 files differ); swap first"
    )
    assert not os.path.exists(manifest.record_path(root))


# --- helpers ---------------------------------------------------------------------------------


@pytest.mark.bad_input
def test_module_lock_refuses_a_second_run(layout):
    with tree.module_lock(layout), pytest.raises(SwapError) as caught, tree.module_lock(layout):
        pass

    assert str(caught.value) == (
        f"another updater run holds {layout.lock}; module ivr_inbound is busy"
    )


def test_exchange_reports_false_without_renameat2(tmp_path, monkeypatch):
    monkeypatch.setattr(journal, "_renameat2", lambda: None)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()

    assert journal.exchange(str(tmp_path / "a"), str(tmp_path / "b")) is False


def test_exchange_swaps_two_directories(tmp_path):
    if journal._renameat2() is None:
        pytest.skip("renameat2 is not available here")
    write_tree(str(tmp_path / "a"), {"from-a": b"a"})
    write_tree(str(tmp_path / "b"), {"from-b": b"b"})

    assert journal.exchange(str(tmp_path / "a"), str(tmp_path / "b")) is True
    assert (os.listdir(tmp_path / "a"), os.listdir(tmp_path / "b")) == (["from-b"], ["from-a"])
