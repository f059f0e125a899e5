# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare a module's installed tree with the manifest: what differs, what to send, the diff."""

import os

from ansible_collections.prairiefyre.updater.plugins.module_utils.fileio import (
    join_relative,
    sha256_file,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.journal import repair
from ansible_collections.prairiefyre.updater.plugins.module_utils.manifest import check_files
from ansible_collections.prairiefyre.updater.plugins.module_utils.tree import (
    installed_files,
    matches,
    regular_stat,
)


def compare_installed(layout, files, hint_dir=None):
    """Return ``(changed, removed, installed)`` of the installed tree against ``files``.

    ``changed`` lists manifest paths whose installed file is missing or different, ``removed``
    installed paths the manifest does not list. A file that shares its inode with the same path
    under ``hint_dir`` (a hardlink made by stage) is the same file and is not read again.
    """
    installed = installed_files(layout)

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
            hint = regular_stat(join_relative(hint_dir, path))
            if hint is not None and (hint.st_dev, hint.st_ino) == (st.st_dev, st.st_ino):
                continue

        if not matches(current, entry, st):
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


def plan(layout, files, check_mode=False):
    """Which of the module's files the controller must send, and what the target holds."""
    files = check_files(files, "files")

    repaired = repair(layout, check_mode=check_mode)

    changed, removed, _installed = compare_installed(layout, files)

    to_send = []
    for path in changed:
        staged = join_relative(layout.staging, path)
        st = regular_stat(staged)
        if st is None or not matches(staged, files[path], st):
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
