# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stage, swap, roll back and commit the files of one manifest module on a host.

Everything lives under ``<install_root>/.updater/`` on the install's own filesystem, so that
putting a verified tree in place is a rename:

    staging/<module>-<id>/            the new tree, complete (sent files + hardlinks)
    staging/<module>-<id>.verified    JSON marker: every staged file's size, sha256 and inode
    backup/<module>/<stamp>-<old id>/ the trees a swap replaced, newest last (+ <name>.json)
    failed/<module>-<id>/             a tree a rollback took out
    journal/<module>.json             written before the renames of a swap or rollback
    locks/<module>.lock               one run per module at a time (POSIX only)

A swap or rollback replaces the target directory with another tree (``src``) and moves the
old tree aside. The journal names both trees by device and inode, which a rename keeps, so
after a crash the next call can tell from where each tree is now how far the renames got and
finish the step (see ``repair``).
"""

import contextlib
import ctypes
import datetime
import errno
import json
import os
import re
import shutil
import stat
import sys

from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import (
    PathError,
    UpdaterError,
    shown,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.fileio import (
    copy_file,
    fsync_dir,
    join_relative,
    sha256_file,
    write_json_atomic,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.manifest import (
    STATE_DIR,
    check_files,
    check_id,
    check_name,
    check_target,
    check_version,
    load_record,
    record_module,
    record_path,
    utc_now,
    write_record,
)

MARKER_FORMAT = 1
DEFAULT_KEEP_BACKUPS = 2
JOURNAL_FORMAT = 1

# Kept free after staging: the service writes logs and caches as soon as it starts again.
FREE_SPACE_MARGIN = 32 * 1024 * 1024

_BACKUP_RE = re.compile(r"^\d{8}T\d{12}Z-(?:\d+|unknown)(?:\.\d+)?$")

# Errors after which a hardlink cannot work here but a copy can.
_NO_LINK_ERRNOS = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES, errno.ENOTSUP}
_NO_LINK_ERRNOS.add(getattr(errno, "EOPNOTSUPP", errno.ENOTSUP))

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_renameat2_cache = []


class SwapError(UpdaterError):
    """A module's files cannot be staged, swapped, rolled back or committed."""


class VerifyError(SwapError):
    """A staged or installed file does not match the manifest."""


class Layout:
    """The paths of one module under one install root, checked once."""

    def __init__(self, install_root, module, target, manifest_id=None):
        check_name(module, "module")
        check_target(target, "target")
        if manifest_id is not None:
            check_id(manifest_id, "manifest_id")

        if not os.path.isabs(install_root):
            raise PathError(
                f"install_root {shown(install_root)} is not an absolute path", path=install_root
            )
        if not os.path.isdir(install_root):
            raise PathError(
                f"install_root {install_root} is not an existing directory", path=install_root
            )

        self.root = install_root
        self.root_real = os.path.realpath(install_root)
        self.module = module
        self.manifest_id = manifest_id
        self.state = os.path.join(install_root, STATE_DIR)
        self.target = join_relative(install_root, target, "target")
        self.staging_root = os.path.join(self.state, "staging")
        self.backup_root = os.path.join(self.state, "backup", module)
        self.failed_root = os.path.join(self.state, "failed")
        self.journal = os.path.join(self.state, "journal", module + ".json")
        self.lock = os.path.join(self.state, "locks", module + ".lock")

        if os.path.islink(self.state):
            raise PathError(
                f"{self.state} is a symlink; the updater keeps its state in a real directory "
                "on the install's filesystem",
                path=self.state,
            )
        self._check_target_path()

    def _check_target_path(self):
        if os.path.islink(self.target):
            raise PathError(
                f"target {self.target} is a symlink; the updater swaps real directories only",
                path=self.target,
            )

        parent_real = os.path.realpath(os.path.dirname(self.target))
        if not _within(parent_real, self.root_real):
            raise PathError(
                f"target {self.target} resolves to {parent_real}, outside the install root "
                f"{self.root}",
                path=self.target,
            )

    def staging_for(self, manifest_id):
        return os.path.join(self.staging_root, f"{self.module}-{manifest_id}")

    def marker_for(self, manifest_id):
        return self.staging_for(manifest_id) + ".verified"

    @property
    def staging(self):
        return self.staging_for(self.manifest_id)

    @property
    def marker(self):
        return self.marker_for(self.manifest_id)


def _within(path, parent):
    return path == parent or path.startswith(parent.rstrip(os.sep) + os.sep)


def _rel(path, top):
    return os.path.relpath(path, top).replace(os.sep, "/")


def tree_files(top, root_real=None):
    """Return ``{"a/b": path}`` for every file under ``top``.

    With ``root_real`` (the installed tree) a symlink is followed when it resolves inside that
    install root and refused otherwise; without it (a staging tree) any symlink is refused.
    Devices, FIFOs and sockets are refused in both.
    """
    found = {}
    if not os.path.isdir(top):
        return found

    stack = [(top, frozenset())]
    while stack:
        directory, ancestors = stack.pop()
        real_dir = os.path.realpath(directory)
        if real_dir in ancestors:
            raise PathError(f"{directory} is a symlink loop", path=directory)
        ancestors = ancestors | {real_dir}

        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda item: item.name):
                if entry.is_symlink():
                    _check_link(entry.path, top, root_real)
                    if not os.path.exists(entry.path):
                        # A dangling link inside the install is a file that matches nothing.
                        found[_rel(entry.path, top)] = entry.path
                        continue

                if entry.is_dir():
                    stack.append((entry.path, ancestors))
                elif entry.is_file():
                    found[_rel(entry.path, top)] = entry.path
                else:
                    raise PathError(
                        f"{entry.path} is neither a regular file nor a directory", path=entry.path
                    )
    return found


def _check_link(path, top, root_real):
    if root_real is None:
        raise PathError(
            f"staged path {path} is a symlink; a staging tree holds regular files only",
            path=path,
        )

    resolved = os.path.realpath(path)
    if not _within(resolved, root_real):
        raise PathError(
            f"{path} is a symlink to {resolved}, outside the install root {root_real}",
            path=path,
            target=top,
        )


def _regular_stat(path):
    """lstat of a regular file, or None when the path is missing or something else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def _matches(path, entry, st=None):
    """True when the file at path has the manifest entry's size and sha256 (size first)."""
    try:
        st = st or os.stat(path)
        if st.st_size != entry["size"]:
            return False
        return sha256_file(path) == entry["sha256"]
    except FileNotFoundError:
        return False


def _dir_id(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return [st.st_dev, st.st_ino] if stat.S_ISDIR(st.st_mode) else None


@contextlib.contextmanager
def module_lock(layout):
    """Hold an exclusive lock for the module, so that two runs never move one tree at once."""
    try:
        import fcntl  # noqa: PLC0415 - absent on Windows, where the lock is skipped
    except ImportError:
        yield
        return

    os.makedirs(os.path.dirname(layout.lock), exist_ok=True)
    with open(layout.lock, "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SwapError(
                f"another updater run holds {layout.lock}; module {layout.module} is busy",
                module=layout.module,
                path=layout.lock,
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


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


def move(src, dst):
    """One rename; the single place renames go through, so tests can stop a swap midway."""
    os.rename(src, dst)


def _fsync_parents(*paths):
    for directory in sorted({os.path.dirname(path) for path in paths}):
        if os.path.isdir(directory):
            fsync_dir(directory)


def _free_bytes(path):
    return shutil.disk_usage(path).free


def _remove_tree(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
        return True
    if os.path.lexists(path):
        os.unlink(path)
        return True
    return False


def _os_error(action, exc, layout):
    return SwapError(
        f"cannot {action} module {layout.module}: {exc.filename or layout.target}: "
        f"{exc.strerror or exc}",
        module=layout.module,
        path=exc.filename,
    )


# --- the journal -----------------------------------------------------------------------------


def _read_journal(layout):
    try:
        with open(layout.journal, encoding="utf-8") as handle:
            journal = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SwapError(
            f"journal {layout.journal} is unreadable ({exc}); compare {layout.target} with the "
            f"newest backup under {layout.backup_root} by hand, then delete the journal",
            module=layout.module,
            path=layout.journal,
        ) from None

    expected = (
        isinstance(journal, dict)
        and journal.get("format") == JOURNAL_FORMAT
        and journal.get("op") in ("swap", "rollback")
        and journal.get("target") == layout.target
        and all(_within(str(journal.get(key)), layout.state) for key in ("src", "aside"))
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
    journal = _read_journal(layout)
    if journal is None:
        return None

    target, src, aside = journal["target"], journal["src"], journal["aside"]
    new, old = journal["src_tree"], journal["target_tree"]
    at_target, at_src, at_aside = _dir_id(target), _dir_id(src), _dir_id(aside)
    what = f"an interrupted {journal['op']} of module {layout.module}"

    if at_src == new and at_target == old:
        step, finish = "had not started; nothing was moved", False
    elif at_target == new and at_aside == old:
        step, finish = "had moved both trees", True
    elif at_target == new and at_src == old:
        step, finish = "had exchanged the trees; moved the old one aside", True
    elif at_target is None and at_src == new and at_aside == old:
        step, finish = "had moved the old tree aside; moved the new one into place", True
    else:
        raise SwapError(
            f"{what} left {target}, {src} and {aside} in a state the journal {layout.journal} "
            "does not explain; restore the target by hand and delete the journal",
            module=layout.module,
            path=layout.journal,
        )

    if check_mode:
        return f"found {what} that {step.split(';')[0]}; a run without check mode repairs it"

    try:
        if at_target == new and at_src == old:
            move(src, aside)
        elif at_target is None:
            move(src, target)
        _fsync_parents(target, src, aside)

        if finish:
            _finish(layout, journal)
        else:
            os.unlink(layout.journal)
    except OSError as exc:
        raise _os_error(f"repair {what} for", exc, layout) from None

    return f"repaired {what} that {step}"


def _replace(layout, journal):
    """Put ``journal['src']`` in place of the target and move the target aside."""
    os.makedirs(os.path.dirname(layout.journal), exist_ok=True)
    write_json_atomic(layout.journal, journal)

    target, src, aside = journal["target"], journal["src"], journal["aside"]
    if exchange(target, src):
        # The target already holds the new tree; only the old one still needs to go aside.
        move(src, aside)
    else:
        move(target, aside)
        move(src, target)
    _fsync_parents(target, src, aside)

    _finish(layout, journal)


def _finish(layout, journal):
    """The bookkeeping after the renames; repeated safely when a repair gets here again."""
    if journal["op"] == "swap":
        write_json_atomic(journal["aside"] + ".json", journal["backup_meta"])
        prune_backups(layout, journal["keep_backups"])
    else:
        _remove_tree(journal["src"] + ".json")
        _remove_tree(layout.marker_for(journal["failed_id"]))
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
        _remove_tree(path + ".json")
    return doomed


def _new_backup_path(layout, old_id):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    base = os.path.join(layout.backup_root, f"{stamp}-{'unknown' if old_id is None else old_id}")
    path, counter = base, 0
    while os.path.lexists(path):
        counter += 1
        path = f"{base}.{counter}"
    return path


def _read_backup_meta(path):
    try:
        with open(path + ".json", encoding="utf-8") as handle:
            meta = json.load(handle)
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _recorded(layout):
    record = load_record(record_path(layout.root))
    entry = (record or {"modules": {}})["modules"].get(layout.module)
    return (entry["manifest_id"], entry["version"]) if entry else (None, None)


def _restore_record(layout, journal):
    """After a rollback, a record that names the rolled-back ID goes back to the old one."""
    recorded_id, _ = _recorded(layout)
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


# --- comparing trees -------------------------------------------------------------------------


def _installed(layout):
    if os.path.lexists(layout.target) and not os.path.isdir(layout.target):
        raise PathError(f"target {layout.target} is not a directory", path=layout.target)
    return tree_files(layout.target, layout.root_real)


def compare_installed(layout, files, hint_dir=None):
    """Return ``(changed, removed, installed)`` of the installed tree against ``files``.

    ``changed`` lists manifest paths whose installed file is missing or different, ``removed``
    installed paths the manifest does not list. A file that shares its inode with the same path
    under ``hint_dir`` (a hardlink made by stage) is the same file and is not read again.
    """
    installed = _installed(layout)

    changed = []
    for path, entry in files.items():
        current = installed.get(path)
        if current is None:
            changed.append(path)
            continue

        try:
            st = os.stat(current)
        except FileNotFoundError:
            changed.append(path)
            continue

        if hint_dir is not None:
            hint = _regular_stat(join_relative(hint_dir, path))
            if hint is not None and (hint.st_dev, hint.st_ino) == (st.st_dev, st.st_ino):
                continue

        if not _matches(current, entry, st):
            changed.append(path)

    removed = sorted(set(installed) - set(files))
    return changed, removed, installed


def _listing(entries):
    return "".join(f"{sha256}  {size:>10}  {path}\n" for path, size, sha256 in entries)


def swap_diff(layout, files, changed, removed, installed):
    """Before/after listings of the paths a swap changes: sha256, size, path per line."""
    before = []
    for path in sorted(set(changed) | set(removed)):
        current = installed.get(path)
        if current is None or not os.path.exists(current):
            continue
        before.append((path, os.path.getsize(current), sha256_file(current)))

    after = [(path, files[path]["size"], files[path]["sha256"]) for path in sorted(changed)]
    return {
        "before_header": f"{layout.target} (installed)",
        "after_header": f"{layout.target} (manifest ID {layout.manifest_id})",
        "before": _listing(before),
        "after": _listing(after),
    }


# --- plan ------------------------------------------------------------------------------------


def plan(layout, files, check_mode=False):
    """Which of the module's files the controller must send, and what the target holds."""
    files = check_files(files, "files")

    repaired = repair(layout, check_mode=check_mode)

    changed, removed, _ = compare_installed(layout, files)

    to_send = []
    for path in changed:
        staged = join_relative(layout.staging, path)
        st = _regular_stat(staged)
        if st is None or not _matches(staged, files[path], st):
            to_send.append(path)

    up_to_date = not changed and not removed
    result = {
        "changed": bool(repaired) and not check_mode,
        "changed_files": to_send,
        "removed_files": removed,
        "bytes_to_send": sum(files[path]["size"] for path in to_send),
        "up_to_date": up_to_date,
        "staging_dir": layout.staging,
        "repaired": repaired,
    }
    if up_to_date:
        result["msg"] = f"module {layout.module}: {layout.target} already has the manifest's files"
    else:
        result["msg"] = (
            f"module {layout.module}: {len(changed)} of {len(files)} files differ in "
            f"{layout.target}, {len(to_send)} to send ({result['bytes_to_send']} bytes), "
            f"{len(removed)} to remove"
        )
    if repaired:
        result["msg"] = f"{result['msg']}; {repaired}"
    return result


# --- stage -----------------------------------------------------------------------------------


def _load_marker(layout):
    try:
        with open(layout.marker, encoding="utf-8") as handle:
            marker = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def _marker_problem(layout, marker, files):
    """Why ``marker`` does not vouch for the staging tree as it is now, or None."""
    if marker is None:
        return f"the marker {layout.marker} is missing"

    expected = {path: {"size": e["size"], "sha256": e["sha256"]} for path, e in files.items()}
    marked = marker.get("files")
    marked = marked if isinstance(marked, dict) else {}
    vouched = {
        path: {"size": e.get("size"), "sha256": e.get("sha256")}
        for path, e in marked.items()
        if isinstance(e, dict)
    }
    if (
        marker.get("format") != MARKER_FORMAT
        or marker.get("module") != layout.module
        or marker.get("manifest_id") != layout.manifest_id
        or vouched != expected
    ):
        return f"the marker {layout.marker} was written for other files"

    staged = tree_files(layout.staging)
    extra = sorted(set(staged) - set(files))
    if extra:
        return f"{staged[extra[0]]} is not in the manifest"

    for path, entry in marker["files"].items():
        st = _regular_stat(join_relative(layout.staging, path))
        if st is None:
            return f"{join_relative(layout.staging, path)} is missing"
        if [st.st_size, st.st_ino, st.st_mtime_ns] != [
            entry.get("size"),
            entry.get("ino"),
            entry.get("mtime_ns"),
        ]:
            return f"{join_relative(layout.staging, path)} changed since it was verified"
    return None


def _mirror_dir(src_dir, dst_dir):
    """Give a staging directory the mode (and, as root, the owner) of the installed one."""
    try:
        st = os.stat(src_dir)
    except FileNotFoundError:
        return

    os.chmod(dst_dir, stat.S_IMODE(st.st_mode))
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        os.chown(dst_dir, st.st_uid, st.st_gid)


def _link_or_copy(src, dst, entry, layout):
    """Hardlink an installed file into staging; copy it where links cannot be made."""
    try:
        os.link(src, dst)
        return "linked"
    except OSError as exc:
        if exc.errno not in _NO_LINK_ERRNOS:
            raise

    free = _free_bytes(os.path.dirname(dst))
    if free < entry["size"] + FREE_SPACE_MARGIN:
        raise SwapError(
            f"cannot stage module {layout.module}: copying {src} needs {entry['size']} bytes "
            f"plus a {FREE_SPACE_MARGIN}-byte margin, and {os.path.dirname(dst)} has {free} free",
            module=layout.module,
            path=dst,
        )

    size, sha256 = copy_file(src, dst, mode=stat.S_IMODE(os.stat(src).st_mode))
    if (size, sha256) != (entry["size"], entry["sha256"]):
        os.unlink(dst)
        raise VerifyError(
            f"cannot stage module {layout.module}: {src} changed while it was copied",
            module=layout.module,
            path=src,
        )
    return "copied"


def _verify_staged(layout, path, entry):
    staged = join_relative(layout.staging, path)
    st = _regular_stat(staged)
    if st is None:
        raise VerifyError(f"staged file {staged} is missing", module=layout.module, path=staged)

    if st.st_size != entry["size"]:
        raise VerifyError(
            f"staged file {staged} has {st.st_size} bytes, the manifest says {entry['size']} "
            "(an incomplete transfer); send it again",
            module=layout.module,
            path=staged,
        )

    digest = sha256_file(staged)
    if digest != entry["sha256"]:
        raise VerifyError(
            f"staged file {staged} has sha256 {digest}, the manifest says {entry['sha256']}; "
            "send it again",
            module=layout.module,
            path=staged,
        )
    return st


def _existing_dir(path):
    while not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_same_filesystem(layout):
    """A swap is a rename, so staging, backups and the target must share one filesystem."""
    state_dev = os.stat(_existing_dir(layout.staging)).st_dev
    target_dir = layout.target if os.path.isdir(layout.target) else _existing_dir(layout.target)
    if os.stat(target_dir).st_dev != state_dev:
        raise SwapError(
            f"cannot stage module {layout.module}: {target_dir} and {layout.state} are on "
            "different filesystems, so the swap could not be a rename; keep them on one filesystem",
            module=layout.module,
            path=target_dir,
        )


def _check_space(layout, sources, files, to_link):
    """Refuse to stage when the filesystem would keep less than the margin free.

    Hardlinks cost no space; only when the staging tree is on another device than the
    installed files (the links will fail) do their bytes count.
    """
    probe = _existing_dir(layout.staging)
    need = FREE_SPACE_MARGIN
    if sources and os.stat(sources[0]).st_dev != os.stat(probe).st_dev:
        need += sum(files[path]["size"] for path in to_link)

    free = _free_bytes(probe)
    if free < need:
        raise SwapError(
            f"cannot stage module {layout.module}: {probe} has {free} bytes free and staging "
            f"needs {need} (a {FREE_SPACE_MARGIN}-byte margin included)",
            module=layout.module,
            path=probe,
        )


def stage(layout, files, version=None, check_mode=False):
    """Complete the staging tree from the installed files and verify every staged file."""
    files = check_files(files, "files")
    if version is not None:
        check_version(version, "version")

    repaired = repair(layout, check_mode=check_mode)
    check_same_filesystem(layout)
    staging = layout.staging

    if os.path.isdir(staging) and _marker_problem(layout, _load_marker(layout), files) is None:
        return {
            "changed": bool(repaired) and not check_mode,
            "staging_dir": staging,
            "marker": layout.marker,
            "linked_files": [],
            "copied_files": [],
            "missing_files": [],
            "verified_files": 0,
            "repaired": repaired,
            "msg": f"module {layout.module}: {staging} is already staged and verified",
        }

    staged = tree_files(staging)
    extra = sorted(set(staged) - set(files))
    if extra:
        raise VerifyError(
            f"staged file {staged[extra[0]]} is not in the manifest of module {layout.module}; "
            f"remove it from {staging}",
            module=layout.module,
            path=staged[extra[0]],
        )

    installed = _installed(layout)
    to_link, missing = [], []
    for path, entry in files.items():
        if path in staged:
            continue

        source = installed.get(path)
        if source is not None and _matches(source, entry):
            to_link.append(path)
        elif check_mode:
            # A check-mode run sent nothing before this step; say so instead of failing.
            missing.append(path)
        else:
            raise VerifyError(
                f"file {path} of module {layout.module} is neither staged in {staging} nor "
                "installed with the manifest's content; send it first (plan lists it)",
                module=layout.module,
                path=path,
            )

    _check_space(layout, [installed[path] for path in to_link], files, to_link)

    if check_mode:
        for path in staged:
            _verify_staged(layout, path, files[path])
        msg = (
            f"module {layout.module}: would link {len(to_link)} installed files into {staging} "
            f"and verify {len(files)}"
        )
        if missing:
            msg += f", once the {len(missing)} files plan lists are sent"
        return {
            "changed": True,
            "staging_dir": staging,
            "marker": layout.marker,
            "linked_files": to_link,
            "copied_files": [],
            "missing_files": missing,
            "verified_files": len(files),
            "repaired": repaired,
            "msg": msg,
        }

    linked, copied = [], []
    try:
        os.makedirs(staging, exist_ok=True)
        _mirror_dir(layout.target, staging)
        for path in to_link:
            dst = join_relative(staging, path)
            parent = os.path.dirname(dst)
            if not os.path.isdir(parent):
                os.makedirs(parent)
                _mirror_dir(os.path.dirname(installed[path]), parent)
            how = _link_or_copy(installed[path], dst, files[path], layout)
            (linked if how == "linked" else copied).append(path)

        marker_files = {}
        for path, entry in files.items():
            if path in to_link:
                # Read once already: its installed copy matched the manifest a moment ago.
                st = _regular_stat(join_relative(staging, path))
            else:
                st = _verify_staged(layout, path, entry)
            marker_files[path] = {
                "size": entry["size"],
                "sha256": entry["sha256"],
                "ino": st.st_ino,
                "mtime_ns": st.st_mtime_ns,
            }

        marker = {
            "format": MARKER_FORMAT,
            "module": layout.module,
            "manifest_id": layout.manifest_id,
            "version": version,
            "verified": utc_now(),
            "files": marker_files,
        }
        write_json_atomic(layout.marker, marker)
    except OSError as exc:
        raise _os_error("stage", exc, layout) from None

    return {
        "changed": True,
        "staging_dir": staging,
        "marker": layout.marker,
        "linked_files": linked,
        "copied_files": copied,
        "missing_files": [],
        "verified_files": len(files),
        "repaired": repaired,
        "msg": f"module {layout.module}: staged {len(files)} files in {staging} "
        f"({len(linked)} linked, {len(copied)} copied from the installed tree) and verified "
        "every sha256",
    }


# --- swap ------------------------------------------------------------------------------------


def swap(layout, files, keep_backups=DEFAULT_KEEP_BACKUPS, check_mode=False, want_diff=False):
    """Put the verified staging tree in place of the target, keeping the old tree as a backup."""
    files = check_files(files, "files")
    if isinstance(keep_backups, bool) or not isinstance(keep_backups, int) or keep_backups < 1:
        raise SwapError(
            f"keep_backups: expected an integer >= 1 (a swap must leave a backup to roll back "
            f"to), got {shown(keep_backups)}",
            field="keep_backups",
            value=keep_backups,
        )

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
        return result

    marker = _load_marker(layout) if staging_ready else None
    if check_mode and marker is None:
        # In a check-mode run stage wrote nothing; report the swap that would follow it.
        result["changed"] = True
        result["msg"] = (
            f"module {layout.module}: would replace {len(changed)} and remove {len(removed)} "
            f"files in {layout.target} once {layout.staging} is staged and verified"
        )
        if want_diff:
            result["diff"] = swap_diff(layout, files, changed, removed, installed)
        return result

    if not staging_ready:
        raise SwapError(
            f"cannot swap module {layout.module}: {layout.staging} does not exist; run stage "
            f"for manifest ID {layout.manifest_id} first",
            module=layout.module,
            path=layout.staging,
        )

    problem = _marker_problem(layout, marker, files)
    if problem:
        raise VerifyError(
            f"cannot swap module {layout.module}: {problem}; run stage again",
            module=layout.module,
            path=layout.marker,
        )

    if want_diff:
        result["diff"] = swap_diff(layout, files, changed, removed, installed)

    result["changed"] = True
    if check_mode:
        result["msg"] = (
            f"module {layout.module}: would replace {len(changed)} and remove {len(removed)} "
            f"files in {layout.target}"
        )
        return result

    try:
        old_id, old_version = _recorded(layout)
        backup = _new_backup_path(layout, old_id)
        os.makedirs(layout.backup_root, exist_ok=True)
        os.makedirs(layout.target, exist_ok=True)
        journal = {
            "format": JOURNAL_FORMAT,
            "op": "swap",
            "module": layout.module,
            "target": layout.target,
            "src": layout.staging,
            "aside": backup,
            "src_tree": _dir_id(layout.staging),
            "target_tree": _dir_id(layout.target),
            "keep_backups": keep_backups,
            "backup_meta": {
                "module": layout.module,
                "old_id": old_id,
                "old_version": old_version,
                "new_id": layout.manifest_id,
                "swapped": utc_now(),
            },
        }
        _replace(layout, journal)
    except OSError as exc:
        raise _os_error("swap", exc, layout) from None

    result["backup"] = backup
    result["msg"] = (
        f"module {layout.module}: swapped in manifest ID {layout.manifest_id} "
        f"({len(changed)} files replaced, {len(removed)} removed); the old tree is in {backup}"
    )
    return result


# --- rollback --------------------------------------------------------------------------------


def rollback(layout, check_mode=False):
    """Put the newest backup back in place; the tree it replaces goes to ``failed/``.

    With ``layout.manifest_id`` set, only a backup taken by the swap that installed that ID is
    used, so a repeated rollback cannot go back one update too far.
    """
    pending = _read_journal(layout)
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
    meta = _read_backup_meta(backup)
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
        _remove_tree(failed)
        os.makedirs(layout.failed_root, exist_ok=True)
        os.makedirs(layout.target, exist_ok=True)
        journal = {
            "format": JOURNAL_FORMAT,
            "op": "rollback",
            "module": layout.module,
            "target": layout.target,
            "src": backup,
            "aside": failed,
            "src_tree": _dir_id(backup),
            "target_tree": _dir_id(layout.target),
            "failed_id": failed_id,
            "restore_id": meta.get("old_id"),
            "restore_version": meta.get("old_version"),
        }
        _replace(layout, journal)
    except OSError as exc:
        raise _os_error("roll back", exc, layout) from None

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


def commit(layout, version, files=None, check_mode=False):
    """Record the module's manifest ID and version on the host and clean up its staging.

    With ``files`` the installed tree is checked first, so a record never claims an ID whose
    files are not in place.
    """
    check_version(version, "version")
    repaired = repair(layout, check_mode=check_mode)

    if files is not None:
        files = check_files(files, "files")
        changed, _, _ = compare_installed(layout, files)
        # In check mode the swap before this step moved nothing, so a difference is expected.
        if changed and not check_mode:
            raise VerifyError(
                f"cannot record manifest ID {layout.manifest_id} for module {layout.module}: "
                f"{join_relative(layout.target, changed[0])} does not match the manifest "
                f"({len(changed)} files differ); swap first",
                module=layout.module,
                path=changed[0],
            )

    record_changed, _ = record_module(
        layout.root, layout.module, layout.manifest_id, version, check_mode=check_mode
    )

    leftovers = _module_leftovers(layout)
    if not check_mode:
        try:
            for path in leftovers:
                _remove_tree(path)
        except OSError as exc:
            raise _os_error("clean up the staging of", exc, layout) from None

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
