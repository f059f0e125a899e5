# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Replace a module's directory with another tree by renames that a crash cannot leave half done.

A swap (the staging tree goes in, the old tree becomes a backup) and a rollback (the backup goes
back in, the failed tree goes to ``failed/``) are the same step: the tree ``src`` takes the place
of the target and the target moves to ``aside``. Before the first rename the step is written to
``journal/<module>.json``, naming both trees by device and inode, which a rename keeps. After a
crash, ``repair`` tells from where each tree is now how far the renames got and finishes the step
or, when nothing had moved, drops the journal.

The renames are the only part of a swap that runs while the service is stopped; ``finish`` (the
backup's metadata, pruning old backups, removing the journal) may run after the service started
again, and ``repair`` runs it when a crash came first.
"""

import ctypes
import datetime
import errno
import os
import re
import shutil
import sys

from ansible_collections.prairiefyre.updater.plugins.module_utils.fileio import (
    fsync_dir,
    read_json_object,
    write_json_atomic,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.manifest import (
    load_record,
    record_module,
    record_path,
    write_record,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.tree import (
    SwapError,
    dir_id,
    os_error,
    remove_tree,
    within,
)

JOURNAL_FORMAT = 1

_BACKUP_RE = re.compile(r"^\d{8}T\d{12}Z-(?:\d+|unknown)(?:\.\d+)?$")

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_renameat2_cache = []
_syncfs_cache = []


def _renameat2():
    if not _renameat2_cache:
        function = None
        if sys.platform.startswith("linux"):
            try:
                function = ctypes.CDLL(None, use_errno=True).renameat2
                function.argtypes = [
                    ctypes.c_int,
                    ctypes.c_char_p,
                    ctypes.c_int,
                    ctypes.c_char_p,
                    ctypes.c_uint,
                ]
                function.restype = ctypes.c_int
            except (OSError, AttributeError):
                function = None
        _renameat2_cache.append(function)
    return _renameat2_cache[0]


def exchange(first, second):
    """Swap two directory entries in one step; False when the kernel, libc or filesystem
    cannot, in which case nothing was changed."""
    function = _renameat2()
    if function is None:
        return False

    result = function(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if result == 0:
        return True

    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, getattr(errno, "EOPNOTSUPP", 0)):
        return False
    raise OSError(code, os.strerror(code), first)


def _syncfs():
    if not _syncfs_cache:
        function = None
        if sys.platform.startswith("linux"):
            try:
                function = ctypes.CDLL(None, use_errno=True).syncfs
                function.argtypes = [ctypes.c_int]
                function.restype = ctypes.c_int
            except (OSError, AttributeError):
                function = None
        _syncfs_cache.append(function)
    return _syncfs_cache[0]


def flush_filesystem(path):
    """Write back the dirty data of the filesystem that holds ``path`` (all of them where
    syncfs is missing).

    Run right before a stop: a rename or a service start that has to queue behind the
    writeback of files written a moment earlier would stretch the downtime.
    """
    function = _syncfs()
    if function is None:
        if hasattr(os, "sync"):
            os.sync()
        return

    fd = os.open(path, os.O_RDONLY)
    try:
        function(fd)
    finally:
        os.close(fd)


def move(src, dst):
    """One rename; the single place renames go through, so tests can stop a swap midway."""
    os.rename(src, dst)


def _fsync_parents(*paths):
    for directory in sorted({os.path.dirname(path) for path in paths}):
        if os.path.isdir(directory):
            fsync_dir(directory)


def read_journal(layout):
    """The pending step of the module, or None; a journal that makes no sense stops everything."""

    def unreadable(exc):
        raise SwapError(
            f"journal {layout.journal} is unreadable ({exc}); compare {layout.target} with the "
            f"newest backup under {layout.backup_root} by hand, then delete the journal",
            module=layout.module,
            path=layout.journal,
        ) from None

    journal = read_json_object(layout.journal, unreadable)
    if journal is None:
        return None

    expected = (
        journal.get("format") == JOURNAL_FORMAT
        and journal.get("op") in ("swap", "rollback")
        and journal.get("target") == layout.target
        and all(within(str(journal.get(key)), layout.state) for key in ("src", "aside"))
    )
    if not expected:
        raise SwapError(
            f"journal {layout.journal} does not describe a step on {layout.target}; delete it "
            "once the target is known to be right",
            module=layout.module,
            path=layout.journal,
        )
    return journal


def repair(layout, check_mode=False):
    """Finish or undo a swap or rollback that stopped between its renames.

    Returns a sentence saying what was found and done, or None when no step was pending. In
    check mode the state is only described.
    """
    journal = read_journal(layout)
    if journal is None:
        return None

    target, src, aside = journal["target"], journal["src"], journal["aside"]
    new, old = journal["src_tree"], journal["target_tree"]
    at_target, at_src, at_aside = dir_id(target), dir_id(src), dir_id(aside)
    what = f"an interrupted {journal['op']} of module {layout.module}"

    if at_src == new and at_target == old:
        step, finish_it = "had not started; nothing was moved", False
    elif at_target == new and at_aside == old:
        step, finish_it = "had moved both trees", True
    elif at_target == new and at_src == old:
        step, finish_it = "had exchanged the trees; moved the old one aside", True
    elif at_target is None and at_src == new and at_aside == old:
        step, finish_it = "had moved the old tree aside; moved the new one into place", True
    else:
        raise SwapError(
            f"{what} left {target}, {src} and {aside} in a state the journal {layout.journal} "
            "does not explain; restore the target by hand and delete the journal",
            module=layout.module,
            path=layout.journal,
        )

    if check_mode:
        return f"found {what} that {step.partition(';')[0]}; a run without check mode repairs it"

    try:
        if at_target == new and at_src == old:
            move(src, aside)
        elif at_target is None:
            move(src, target)
        _fsync_parents(target, src, aside)

        if finish_it:
            finish(layout, journal)
        else:
            os.unlink(layout.journal)
    except OSError as exc:
        raise os_error(f"repair {what} for", exc, layout) from None

    return f"repaired {what} that {step}"


def write_journal(layout, journal):
    """Make the step durable before its first rename; until then a repair only drops it."""
    os.makedirs(os.path.dirname(layout.journal), exist_ok=True)
    write_json_atomic(layout.journal, journal)


def rename_trees(journal):
    """The renames of a journalled step, and nothing else: what runs while a service is down.

    Their fsyncs wait for ``finish``: the journal is on disk already, and ``repair`` tells any
    mix of done and undone renames apart after a crash.
    """
    target, src, aside = journal["target"], journal["src"], journal["aside"]
    if exchange(target, src):
        # The target already holds the new tree; only the old one still needs to go aside.
        move(src, aside)
    else:
        move(target, aside)
        move(src, target)


def put_in_place(layout, journal):
    """Put ``journal['src']`` in place of the target and move the target aside.

    The caller runs ``finish`` afterwards.
    """
    write_journal(layout, journal)
    rename_trees(journal)


def finish(layout, journal):
    """The bookkeeping after the renames; repeated safely when a repair gets here again."""
    _fsync_parents(journal["target"], journal["src"], journal["aside"])
    if journal["op"] == "swap":
        write_json_atomic(journal["aside"] + ".json", journal["backup_meta"])
        prune_backups(layout, journal["keep_backups"])
    else:
        remove_tree(journal["src"] + ".json")
        remove_tree(layout.marker_for(journal["failed_id"]))
        _restore_record(layout, journal)

    os.unlink(layout.journal)
    fsync_dir(os.path.dirname(layout.journal))


# --- backups ---------------------------------------------------------------------------------


def list_backups(layout):
    """The module's backup directories, oldest first."""
    try:
        names = os.listdir(layout.backup_root)
    except FileNotFoundError:
        return []

    return [
        os.path.join(layout.backup_root, name)
        for name in sorted(names)
        if _BACKUP_RE.match(name) and os.path.isdir(os.path.join(layout.backup_root, name))
    ]


def prune_backups(layout, keep):
    """Delete all but the newest ``keep`` backups; return the deleted paths."""
    backups = list_backups(layout)
    doomed = backups[: max(len(backups) - keep, 0)]
    for path in doomed:
        shutil.rmtree(path)
        remove_tree(path + ".json")
    return doomed


def new_backup_path(layout, old_id):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    base = os.path.join(layout.backup_root, f"{stamp}-{'unknown' if old_id is None else old_id}")
    path, counter = base, 0
    while os.path.lexists(path):
        counter += 1
        path = f"{base}.{counter}"
    return path


def read_backup_meta(path):
    """The note beside a backup; a missing or damaged one says nothing ({})."""
    return read_json_object(path + ".json", lambda _error: {}) or {}


def backup_of(layout):
    """The newest backup when the swap that took it installed ``layout.manifest_id``, else None.

    That backup is what a rollback of this manifest ID restores.
    """
    backups = list_backups(layout)
    if not backups or layout.manifest_id is None:
        return None
    return (
        backups[-1] if read_backup_meta(backups[-1]).get("new_id") == layout.manifest_id else None
    )


def recorded(layout):
    """The manifest ID and version the host record holds for the module, or (None, None)."""
    record = load_record(record_path(layout.root))
    entry = (record or {"modules": {}})["modules"].get(layout.module)
    return (entry["manifest_id"], entry["version"]) if entry else (None, None)


def _restore_record(layout, journal):
    """After a rollback, a record that names the rolled-back ID goes back to the old one."""
    recorded_id, _recorded_version = recorded(layout)
    if recorded_id is None or recorded_id != journal["failed_id"]:
        return

    old_id, old_version = journal.get("restore_id"), journal.get("restore_version")
    if old_id is not None and old_version is not None:
        record_module(layout.root, layout.module, old_id, old_version)
        return

    # The backup predates any record: forget the module so the next run installs it again.
    record = load_record(record_path(layout.root))
    del record["modules"][layout.module]
    write_record(layout.root, record)
