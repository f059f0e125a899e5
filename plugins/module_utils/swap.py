# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Swap a verified staging tree in, roll a swap back, and record the new manifest ID.

``prepare`` does every check a swap needs (repair of an interrupted step, the installed tree
against the manifest, the staging marker) and builds the journal, so that a caller can stop the
service after it and run only ``journal.put_in_place`` until the service starts again.
"""

import os
import re

from ansible_collections.prairiefyre.updater.plugins.module_utils.compare import (
    compare_installed,
    swap_diff,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import shown
from ansible_collections.prairiefyre.updater.plugins.module_utils.fileio import join_relative
from ansible_collections.prairiefyre.updater.plugins.module_utils.journal import (
    JOURNAL_FORMAT,
    finish,
    list_backups,
    new_backup_path,
    put_in_place,
    read_backup_meta,
    read_journal,
    recorded,
    repair,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.manifest import (
    check_files,
    check_version,
    record_module,
    record_path,
    utc_now,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.staging import (
    load_marker,
    marker_problem,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.tree import (
    SwapError,
    VerifyError,
    dir_id,
    os_error,
    remove_tree,
)

DEFAULT_KEEP_BACKUPS = 2


def check_keep_backups(keep_backups):
    if isinstance(keep_backups, bool) or not isinstance(keep_backups, int) or keep_backups < 1:
        raise SwapError(
            f"keep_backups: expected an integer >= 1 (a swap must leave a backup to roll back "
            f"to), got {shown(keep_backups)}",
            field="keep_backups",
            value=keep_backups,
        )


def _would(layout, changed, removed):
    return (
        f"module {layout.module}: would replace {len(changed)} and remove {len(removed)} files "
        f"in {layout.target}"
    )


def prepare(layout, files, keep_backups=DEFAULT_KEEP_BACKUPS, check_mode=False, want_diff=False):
    """Check everything a swap needs; return ``(result, needed, journal)``.

    ``needed`` says whether the target differs from the manifest. ``journal`` is the step for
    ``put_in_place`` (None in check mode or when nothing is to swap); building it creates the
    target and backup directories, so every slow or failing part happens before a stop.
    """
    files = check_files(files, "files")
    check_keep_backups(keep_backups)

    repaired = repair(layout, check_mode=check_mode)
    staging_ready = os.path.isdir(layout.staging)

    changed, removed, installed = compare_installed(
        layout, files, hint_dir=layout.staging if staging_ready else None
    )
    result = {
        "changed": False,
        "changed_files": changed,
        "removed_files": removed,
        "backup": None,
        "repaired": repaired,
    }
    if not changed and not removed:
        result["changed"] = bool(repaired) and not check_mode
        result["msg"] = f"module {layout.module}: {layout.target} already has the manifest's files"
        return result, False, None

    result["changed"] = True
    marker = load_marker(layout) if staging_ready else None
    if check_mode and marker is None:
        # In a check-mode run stage wrote nothing; report the swap that would follow it.
        result["msg"] = (
            f"{_would(layout, changed, removed)} once {layout.staging} is staged and verified"
        )
        if want_diff:
            result["diff"] = swap_diff(layout, files, changed, removed, installed)
        return result, True, None

    if not staging_ready:
        raise SwapError(
            f"cannot swap module {layout.module}: {layout.staging} does not exist; run stage "
            f"for manifest ID {layout.manifest_id} first",
            module=layout.module,
            path=layout.staging,
        )

    problem = marker_problem(layout, marker, files)
    if problem:
        raise VerifyError(
            f"cannot swap module {layout.module}: {problem}; run stage again",
            module=layout.module,
            path=layout.marker,
        )

    if want_diff:
        result["diff"] = swap_diff(layout, files, changed, removed, installed)

    if check_mode:
        result["msg"] = _would(layout, changed, removed)
        return result, True, None

    try:
        journal = _journal(layout, keep_backups)
    except OSError as exc:
        raise os_error("swap", exc, layout) from None
    return result, True, journal


def _journal(layout, keep_backups):
    old_id, old_version = recorded(layout)
    backup = new_backup_path(layout, old_id)
    os.makedirs(layout.backup_root, exist_ok=True)
    os.makedirs(layout.target, exist_ok=True)
    return {
        "format": JOURNAL_FORMAT,
        "op": "swap",
        "module": layout.module,
        "target": layout.target,
        "src": layout.staging,
        "aside": backup,
        "src_tree": dir_id(layout.staging),
        "target_tree": dir_id(layout.target),
        "keep_backups": keep_backups,
        "backup_meta": {
            "module": layout.module,
            "old_id": old_id,
            "old_version": old_version,
            "new_id": layout.manifest_id,
            "swapped": utc_now(),
        },
    }


def swapped_msg(layout, result, journal):
    return (
        f"module {layout.module}: swapped in manifest ID {layout.manifest_id} "
        f"({len(result['changed_files'])} files replaced, {len(result['removed_files'])} "
        f"removed); the old tree is in {journal['aside']}"
    )


def swap(layout, files, keep_backups=DEFAULT_KEEP_BACKUPS, check_mode=False, want_diff=False):
    """Put the verified staging tree in place of the target, keeping the old tree as a backup."""
    result, _needed, journal = prepare(layout, files, keep_backups, check_mode, want_diff)
    if journal is None:
        return result

    try:
        put_in_place(layout, journal)
        finish(layout, journal)
    except OSError as exc:
        raise os_error("swap", exc, layout) from None

    result["backup"] = journal["aside"]
    result["msg"] = swapped_msg(layout, result, journal)
    return result


# --- rollback --------------------------------------------------------------------------------


def rollback(layout, check_mode=False):
    """Put the newest backup back in place; the tree it replaces goes to ``failed/``.

    With ``layout.manifest_id`` set, only a backup taken by the swap that installed that ID is
    used, so a repeated rollback cannot go back one update too far.
    """
    pending = read_journal(layout)
    repaired = repair(layout, check_mode=check_mode)
    if repaired and pending["op"] == "rollback" and not check_mode:
        # The interrupted rollback is now complete; a second one would go back one update more.
        return {
            "changed": True,
            "backup": pending["src"],
            "failed_dir": pending["aside"],
            "restored_id": pending.get("restore_id"),
            "repaired": repaired,
            "msg": f"module {layout.module}: {repaired}",
        }

    backups = list_backups(layout)
    if not backups:
        raise SwapError(
            f"nothing to roll back for module {layout.module}: no backup in {layout.backup_root}",
            module=layout.module,
            path=layout.backup_root,
        )

    backup = backups[-1]
    meta = read_backup_meta(backup)
    new_id = meta.get("new_id")
    if layout.manifest_id is not None and new_id != layout.manifest_id:
        raise SwapError(
            f"nothing to roll back for module {layout.module} at manifest ID "
            f"{layout.manifest_id}: the newest backup {backup} was taken by the swap to "
            f"{'an unknown ID' if new_id is None else f'ID {new_id}'}",
            module=layout.module,
            path=backup,
        )

    failed_id = new_id if new_id is not None else "unknown"
    failed = os.path.join(layout.failed_root, f"{layout.module}-{failed_id}")
    result = {
        "changed": True,
        "backup": backup,
        "failed_dir": failed,
        "restored_id": meta.get("old_id"),
        "repaired": repaired,
    }
    if check_mode:
        result["msg"] = f"module {layout.module}: would restore {backup} to {layout.target}"
        return result

    try:
        remove_tree(failed)
        os.makedirs(layout.failed_root, exist_ok=True)
        os.makedirs(layout.target, exist_ok=True)
        journal = {
            "format": JOURNAL_FORMAT,
            "op": "rollback",
            "module": layout.module,
            "target": layout.target,
            "src": backup,
            "aside": failed,
            "src_tree": dir_id(backup),
            "target_tree": dir_id(layout.target),
            "failed_id": failed_id,
            "restore_id": meta.get("old_id"),
            "restore_version": meta.get("old_version"),
        }
        put_in_place(layout, journal)
        finish(layout, journal)
    except OSError as exc:
        raise os_error("roll back", exc, layout) from None

    result["msg"] = (
        f"module {layout.module}: restored {backup} to {layout.target}; the rolled-back tree is "
        f"in {failed}"
    )
    return result


# --- commit ----------------------------------------------------------------------------------


def _module_leftovers(layout):
    """Staging trees and markers of this module at the committed ID or older."""
    try:
        names = os.listdir(layout.staging_root)
    except FileNotFoundError:
        return []

    pattern = re.compile(re.escape(layout.module) + r"-(\d+)(?:\.verified)?$")
    leftovers = []
    for name in sorted(names):
        match = pattern.match(name)
        if match and int(match.group(1)) <= layout.manifest_id:
            leftovers.append(os.path.join(layout.staging_root, name))
    return leftovers


def commit(layout, version, files=None, check_mode=False, serial=None):
    """Record the module's manifest ID and version on the host and clean up its staging.

    With ``files`` the installed tree is checked first, so a record never claims an ID whose
    files are not in place. ``serial``, the enterprise manifest's, becomes the record's serial,
    below which manifest_compare refuses a manifest (a replay).
    """
    check_version(version, "version")
    repaired = repair(layout, check_mode=check_mode)

    if files is not None:
        files = check_files(files, "files")
        changed, _removed, _installed = compare_installed(layout, files)
        # In check mode the swap before this step moved nothing, so a difference is expected.
        if changed and not check_mode:
            raise VerifyError(
                f"cannot record manifest ID {layout.manifest_id} for module {layout.module}: "
                f"{join_relative(layout.target, changed[0])} does not match the manifest "
                f"({len(changed)} files differ); swap first",
                module=layout.module,
                path=changed[0],
            )

    record_changed, _record = record_module(
        layout.root,
        layout.module,
        layout.manifest_id,
        version,
        serial=serial,
        check_mode=check_mode,
    )

    leftovers = _module_leftovers(layout)
    if not check_mode:
        try:
            for path in leftovers:
                remove_tree(path)
        except OSError as exc:
            raise os_error("clean up the staging of", exc, layout) from None

    if record_changed:
        msg = f"recorded manifest ID {layout.manifest_id} (version {version})"
    else:
        msg = f"manifest ID {layout.manifest_id} (version {version}) was already recorded"
    if leftovers:
        msg += f"; removed {len(leftovers)} staging entries"
    return {
        "changed": record_changed or bool(leftovers) or (bool(repaired) and not check_mode),
        "record": record_path(layout.root),
        "removed_staging": leftovers,
        "repaired": repaired,
        "msg": f"module {layout.module}: {msg}",
    }
