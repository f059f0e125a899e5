# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fill in the files of a patch bundle's patch.json from what lies under its files/ directory.

    make_bundle.py BUNDLE_DIR            rewrite patch.json: every file under files/<module>/
                                         listed with its size and sha256, nothing else listed
    make_bundle.py BUNDLE_DIR --check    change nothing; exit 1 and name what is stale
    make_bundle.py BUNDLE_DIR --tar OUT  also write OUT, a .tar.gz of the bundle

A bundle author writes patch.json by hand except the "files" objects, and lets this tool keep
them true. The collection's enterprise_patch verifies them again before it writes anything.
Standard library only, so it runs with any Python 3.9+.
"""

import argparse
import gzip
import hashlib
import json
import os
import sys
import tarfile

CHUNK_SIZE = 1024 * 1024


def file_entry(path):
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_SIZE), b""):
            digest.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


def scan_module(module_dir):
    """Every regular file below module_dir as {"a/b.txt": {size, sha256}}, sorted by path."""
    files = {}
    for current, dirs, names in os.walk(module_dir):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(current, name)
            if os.path.islink(path) or not os.path.isfile(path):
                raise SystemExit(f"make_bundle: {path} is not a regular file")
            relative = os.path.relpath(path, module_dir).replace(os.sep, "/")
            files[relative] = file_entry(path)
    return dict(sorted(files.items()))


def refresh(bundle):
    """Return (patch with fresh "files" objects, [descriptions of what changed])."""
    with open(os.path.join(bundle, "patch.json"), encoding="utf-8") as handle:
        patch = json.load(handle)

    files_dir = os.path.join(bundle, "files")
    on_disk = sorted(os.listdir(files_dir)) if os.path.isdir(files_dir) else []
    modules = patch.get("modules", {})
    stray = [name for name in on_disk if name not in modules]
    if stray:
        raise SystemExit(f"make_bundle: files/{stray[0]} belongs to no module of patch.json")

    changes = []
    for name, module in modules.items():
        module_dir = os.path.join(files_dir, name)
        fresh = scan_module(module_dir) if os.path.isdir(module_dir) else {}
        listed = module.get("files", {})
        for path in sorted(set(fresh) | set(listed)):
            if fresh.get(path) != listed.get(path):
                changes.append(f"{name}/{path}")
        if fresh or "files" in module:
            module["files"] = fresh

    return patch, changes


def write_tar(bundle, out):
    """A .tar.gz with one top directory named like the bundle; same input, same bytes."""
    top = os.path.basename(os.path.abspath(bundle))
    paths = ["patch.json"]
    for current, dirs, names in os.walk(os.path.join(bundle, "files")):
        dirs.sort()
        paths.extend(
            os.path.relpath(os.path.join(current, name), bundle).replace(os.sep, "/")
            for name in sorted(names)
        )

    # An empty file name and mtime 0 in the gzip header keep the bytes equal between runs.
    raw = open(out, "wb")  # noqa: SIM115 - closed below, after the gzip and tar layers
    try:
        zipped = gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0)
        with zipped, tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in paths:
                info = tar.gettarinfo(os.path.join(bundle, path), arcname=f"{top}/{path}")
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                info.mode = 0o644
                with open(os.path.join(bundle, path), "rb") as handle:
                    tar.addfile(info, handle)
    finally:
        raw.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="the bundle directory (holds patch.json and files/)")
    parser.add_argument("--check", action="store_true", help="report stale entries, write nothing")
    parser.add_argument("--tar", metavar="OUT", help="also write the bundle as a .tar.gz")
    args = parser.parse_args(argv)

    patch, changes = refresh(args.bundle)
    if args.check:
        for change in changes:
            print(f"make_bundle: stale entry for files/{change}")
        return 1 if changes else 0

    if changes:
        path = os.path.join(args.bundle, "patch.json")
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            handle.write(json.dumps(patch, indent=2, ensure_ascii=False) + "\n")
        os.replace(path + ".tmp", path)
    print(f"make_bundle: {args.bundle}: {len(changes)} file entries updated")

    if args.tar:
        write_tar(args.bundle, args.tar)
        print(f"make_bundle: wrote {args.tar}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
