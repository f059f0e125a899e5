# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""File helpers: streaming sha256, atomic writes and the check of relative paths.

Paths inside manifests, host records and patch bundles are always written with ``/`` and are
relative to a directory the updater owns (a module's target, a package, a bundle). The check
here is the one gate every such path passes before it is joined to a real directory.
"""

import hashlib
import json
import os
import re
import tempfile

from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import (
    PathError,
    UpdaterError,
    json_kind,
    shown,
)

CHUNK_SIZE = 1024 * 1024

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def sha256_file(path):
    """Return the lowercase hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def copy_file(src, dst, mode=0o644):
    """Copy src to dst in 1 MiB chunks, fsync it and return (size, sha256) of what was written.

    The caller compares the returned hash with the manifest, so a file that changed on disk
    since it was verified cannot slip into a package unnoticed.
    """
    digest = hashlib.sha256()
    size = 0
    with open(src, "rb") as source, open(dst, "wb") as target:
        for chunk in iter(lambda: source.read(CHUNK_SIZE), b""):
            digest.update(chunk)
            size += len(chunk)
            target.write(chunk)
        target.flush()
        os.fsync(target.fileno())
    os.chmod(dst, mode)
    return size, digest.hexdigest()


def list_dir(path, what, error=UpdaterError):
    """The names in directory path; an OSError becomes ``error`` naming ``what`` and the path.

    A missing directory raises FileNotFoundError unchanged, for callers to whom it means
    "nothing there".
    """
    try:
        return os.listdir(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise error(f"cannot list {what} {path}: {exc.strerror}", file=path) from None


def read_json_object(path, unreadable):
    """The JSON object in file path as a dict, or None when there is no such file.

    A file that is there but cannot be read, or holds no JSON object, is the caller's to
    judge: the result is ``unreadable(error)``, which may stand in a value or raise the
    caller's own error. The updater's state files (journal, staging marker, lease record,
    backup note) differ only there.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        return unreadable(error)

    if not isinstance(data, dict):
        return unreadable(ValueError(f"it holds {json_kind(data)}, not a JSON object"))
    return data


def fsync_dir(path):
    """Flush a directory entry (a rename or a new file) to disk where the platform allows it."""
    if os.name != "posix":
        return

    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path, data, mode=0o644):
    """Replace path with data so that a reader sees either the old or the new content.

    The temporary file lives in the same directory, because os.replace is only atomic within
    one filesystem.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(
        prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

    fsync_dir(directory)


def write_text_atomic(path, text, mode=0o644, encoding="utf-8"):
    """Atomically replace path with text in the given encoding."""
    write_bytes_atomic(path, text.encode(encoding), mode=mode)


def dump_json(data):
    """The JSON spelling of every file the collection writes: indent 2, UTF-8, final newline."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def write_json_atomic(path, data, mode=0o644):
    """Atomically replace path with data as JSON (see dump_json)."""
    write_text_atomic(path, dump_json(data), mode=mode)


def _path_problem(path):
    if _CONTROL.search(path):
        return "it contains a NUL or control character"

    if "\\" in path:
        if _DRIVE.match(path):
            return "it starts with a drive letter"
        return "it contains a backslash; separate directories with /"

    if _DRIVE.match(path):
        return "it starts with a drive letter"

    if path.startswith("/"):
        return "it is absolute"

    for part in path.split("/"):
        if part == "..":
            return 'it climbs out with ".."'
        if part in ("", "."):
            return 'it has an empty or "." component'

    return None


def check_relative_path(path, field="path"):
    """Return path when it is a safe relative path, else raise PathError naming field.

    Safe means: a non-empty string of "/"-separated names, none of them empty, "." or "..",
    without NUL, control characters, backslashes or a drive letter, and not absolute. One
    spelling per file keeps two manifest entries from naming the same file.
    """
    if not isinstance(path, str) or not path:
        raise PathError(
            f"{field}: expected a non-empty relative path, got {shown(path)}",
            field=field,
            value=path,
        )

    problem = _path_problem(path)
    if problem:
        raise PathError(
            f"{field}: expected a safe relative path, got {shown(path)} ({problem})",
            field=field,
            value=path,
        )

    return path


def join_relative(root, path, field="path"):
    """Join a checked relative path to root with the platform's separator."""
    check_relative_path(path, field)
    return os.path.join(root, *path.split("/"))


def is_within(path, parent):
    """True when the relative path equals parent or lies below it (both "/"-separated)."""
    return path == parent or path.startswith(parent + "/")
