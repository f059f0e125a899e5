# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Complete and verify a module's staging tree while its services still run.

The controller sends only the files that differ into ``staging/<module>-<id>/``; ``stage``
hardlinks the unchanged installed files beside them, checks every size and sha256 and the free
space, flushes the sent files to disk and writes the marker that ``swap`` trusts. Everything
slow happens here, so that the stop-to-start window holds renames only.
"""

import errno
import hashlib
import os
import stat

from ansible_collections.prairiefyre.updater.plugins.module_utils.fileio import (
    CHUNK_SIZE,
    copy_file,
    join_relative,
    read_json_object,
    sha256_file,
    write_json_atomic,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.journal import repair
from ansible_collections.prairiefyre.updater.plugins.module_utils.manifest import (
    check_files,
    check_version,
    utc_now,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.tree import (
    SwapError,
    VerifyError,
    existing_dir,
    free_bytes,
    installed_files,
    matches,
    os_error,
    regular_stat,
    tree_files,
)

MARKER_FORMAT = 1

# Kept free after staging: the service writes logs and caches as soon as it starts again.
FREE_SPACE_MARGIN = 32 * 1024 * 1024

# Errors after which a hardlink cannot work here but a copy can.
_NO_LINK_ERRNOS = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES, errno.ENOTSUP}
_NO_LINK_ERRNOS.add(getattr(errno, "EOPNOTSUPP", errno.ENOTSUP))


def load_marker(layout):
    """The staging marker, None when there is none, {} when it cannot vouch for anything."""
    return read_json_object(layout.marker, lambda _error: {})


def marker_problem(layout, marker, files):
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
        st = regular_stat(join_relative(layout.staging, path))
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

    free = free_bytes(os.path.dirname(dst))
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


def _hash_and_flush(path):
    """sha256 of a file, read in chunks, and its data flushed to disk.

    A sent file may still sit in the page cache; flushing it now keeps the writeback out of
    the stop-to-start window, where the swap's directory fsyncs would otherwise wait for it.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_SIZE), b""):
            digest.update(chunk)
        os.fsync(handle.fileno())
    return digest.hexdigest()


def _verify_staged(layout, path, entry, flush=False):
    staged = join_relative(layout.staging, path)
    st = regular_stat(staged)
    if st is None:
        raise VerifyError(f"staged file {staged} is missing", module=layout.module, path=staged)

    if st.st_size != entry["size"]:
        raise VerifyError(
            f"staged file {staged} has {st.st_size} bytes, the manifest says {entry['size']} "
            "(an incomplete transfer); send it again",
            module=layout.module,
            path=staged,
        )

    digest = _hash_and_flush(staged) if flush else sha256_file(staged)
    if digest != entry["sha256"]:
        raise VerifyError(
            f"staged file {staged} has sha256 {digest}, the manifest says {entry['sha256']}; "
            "send it again",
            module=layout.module,
            path=staged,
        )
    return st


def check_same_filesystem(layout):
    """A swap is a rename, so staging, backups and the target must share one filesystem."""
    state_dev = os.stat(existing_dir(layout.staging)).st_dev
    target_dir = layout.target if os.path.isdir(layout.target) else existing_dir(layout.target)
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
    probe = existing_dir(layout.staging)
    need = FREE_SPACE_MARGIN
    if sources and os.stat(sources[0]).st_dev != os.stat(probe).st_dev:
        need += sum(files[path]["size"] for path in to_link)

    free = free_bytes(probe)
    if free < need:
        raise SwapError(
            f"cannot stage module {layout.module}: {probe} has {free} bytes free and staging "
            f"needs {need} (a {FREE_SPACE_MARGIN}-byte margin included)",
            module=layout.module,
            path=probe,
        )


def _result(layout, changed, repaired, msg, **lists):
    result = {
        "changed": changed,
        "staging_dir": layout.staging,
        "marker": layout.marker,
        "linked_files": [],
        "copied_files": [],
        "missing_files": [],
        "verified_files": 0,
        "repaired": repaired,
        "msg": msg,
    }
    result.update(lists)
    return result


def _sort_out(layout, files, staged, check_mode):
    """Split the manifest's files not yet staged into those to link and those missing."""
    installed = installed_files(layout)
    to_link, missing = [], []
    for path, entry in files.items():
        if path in staged:
            continue

        source = installed.get(path)
        if source is not None and matches(source, entry):
            to_link.append(path)
        elif check_mode:
            # A check-mode run sent nothing before this step; say so instead of failing.
            missing.append(path)
        else:
            raise VerifyError(
                f"file {path} of module {layout.module} is neither staged in {layout.staging} "
                "nor installed with the manifest's content; send it first (plan lists it)",
                module=layout.module,
                path=path,
            )
    return installed, to_link, missing


def _build(layout, files, version, installed, to_link):
    """Link the unchanged files in, verify and flush the sent ones, write the marker."""
    staging = layout.staging
    linked, copied = [], []
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
            st = regular_stat(join_relative(staging, path))
        else:
            st = _verify_staged(layout, path, entry, flush=True)
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
    return linked, copied


def stage(layout, files, version=None, check_mode=False):
    """Complete the staging tree from the installed files and verify every staged file."""
    files = check_files(files, "files")
    if version is not None:
        check_version(version, "version")

    repaired = repair(layout, check_mode=check_mode)
    check_same_filesystem(layout)
    staging = layout.staging

    if os.path.isdir(staging) and marker_problem(layout, load_marker(layout), files) is None:
        msg = f"module {layout.module}: {staging} is already staged and verified"
        return _result(layout, bool(repaired) and not check_mode, repaired, msg)

    staged = tree_files(staging)
    extra = sorted(set(staged) - set(files))
    if extra:
        raise VerifyError(
            f"staged file {staged[extra[0]]} is not in the manifest of module {layout.module}; "
            f"remove it from {staging}",
            module=layout.module,
            path=staged[extra[0]],
        )

    installed, to_link, missing = _sort_out(layout, files, staged, check_mode)
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
        return _result(
            layout,
            True,
            repaired,
            msg,
            linked_files=to_link,
            missing_files=missing,
            verified_files=len(files),
        )

    try:
        linked, copied = _build(layout, files, version, installed, to_link)
    except OSError as exc:
        raise os_error("stage", exc, layout) from None

    msg = (
        f"module {layout.module}: staged {len(files)} files in {staging} ({len(linked)} linked, "
        f"{len(copied)} copied from the installed tree) and verified every sha256"
    )
    return _result(
        layout,
        True,
        repaired,
        msg,
        linked_files=linked,
        copied_files=copied,
        verified_files=len(files),
    )
