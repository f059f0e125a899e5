# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The paths of one manifest module on a host, and the file-tree helpers every step shares.

Everything the updater keeps lives under ``<install_root>/.updater/`` on the install's own
filesystem, so that putting a verified tree in place is a rename:

    staging/<module>-<id>/            the new tree, complete (sent files + hardlinks)
    staging/<module>-<id>.verified    JSON marker: every staged file's size, sha256 and inode
    backup/<module>/<stamp>-<old id>/ the trees a swap replaced, newest last (+ <name>.json)
    failed/<module>-<id>/             a tree a rollback took out
    journal/<module>.json             written before the renames of a swap or rollback
    locks/<module>.lock               one run per module at a time (POSIX only)
"""

import contextlib
import os
import shutil
import stat

from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import (
    PathError,
    UpdaterError,
    shown,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.fileio import (
    join_relative,
    sha256_file,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.manifest import (
    STATE_DIR,
    check_id,
    check_name,
    check_target,
)


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
        if not within(parent_real, self.root_real):
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


def within(path, parent):
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
    if not within(resolved, root_real):
        raise PathError(
            f"{path} is a symlink to {resolved}, outside the install root {root_real}",
            path=path,
            target=top,
        )


def installed_files(layout):
    """The files of the module's installed tree, as ``tree_files`` gives them."""
    if os.path.lexists(layout.target) and not os.path.isdir(layout.target):
        raise PathError(f"target {layout.target} is not a directory", path=layout.target)
    return tree_files(layout.target, layout.root_real)


def regular_stat(path):
    """lstat of a regular file, or None when the path is missing or something else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def matches(path, entry, st=None):
    """True when the file at path has the manifest entry's size and sha256 (size first)."""
    try:
        st = st or os.stat(path)
        if st.st_size != entry["size"]:
            return False
        return sha256_file(path) == entry["sha256"]
    except FileNotFoundError:
        return False


def dir_id(path):
    """``[device, inode]`` of a directory (a rename keeps both), or None."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return [st.st_dev, st.st_ino] if stat.S_ISDIR(st.st_mode) else None


def existing_dir(path):
    """The path itself or its nearest ancestor that exists as a directory."""
    while not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def free_bytes(path):
    return shutil.disk_usage(path).free


def remove_tree(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
        return True
    if os.path.lexists(path):
        os.unlink(path)
        return True
    return False


def os_error(action, exc, layout, **context):
    return SwapError(
        f"cannot {action} module {layout.module}: {exc.filename or layout.target}: "
        f"{exc.strerror or exc}",
        module=layout.module,
        path=exc.filename,
        **context,
    )


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
