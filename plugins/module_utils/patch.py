# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apply a patch bundle to the enterprise distribution directory.

The order of the writes is the safety argument: every bundle file is verified first, each new
package is built in a temporary directory inside dist_dir and renamed into place, and the
manifest is replaced last and atomically. A reader (the HTTP server, a host) sees the old
manifest or the new one, and the old one never names a package that is not complete. A failure
before the manifest is written removes the packages it added, leaving dist_dir as it was.
"""

import contextlib
import gzip
import os
import shutil
import tarfile
import tempfile
import zlib

from ansible_collections.prairiefyre.updater.plugins.module_utils import manifest as mf
from ansible_collections.prairiefyre.updater.plugins.module_utils import signing
from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import (
    ManifestError,
    PatchError,
    PathError,
    SignatureError,
    shown,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.fileio import (
    check_relative_path,
    copy_file,
    dump_json,
    fsync_dir,
    join_relative,
    sha256_file,
    write_bytes_atomic,
    write_json_atomic,
)

try:
    import fcntl
except ImportError:  # the enterprise side runs where Ansible's controller runs; not Windows
    fcntl = None

PATCH_KEYS = ("format", "patch_id", "product_version", "modules")
PATCH_MODULE_KEYS = ("version",)
PATCH_MODULE_OPTIONAL = ("manifest_id", "target", "services", "files", "remove")
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = MANIFEST_NAME + signing.SIGNATURE_SUFFIX
PACKAGES_DIR = "packages"
LOCK_NAME = ".patch.lock"


def parse_patch(data, source=None):
    """Validate a patch.json document (bytes, str or dict) and return a normalized copy."""
    try:
        return mf.parse_document(data, _parse_patch, source)
    except ManifestError as error:
        raise PatchError(error.message, **error.context) from None


def _parse_patch(doc):
    if isinstance(doc, dict) and "format" in doc:
        mf.check_format(doc["format"])
    mf.check_object(doc, "patch", PATCH_KEYS)
    modules = doc["modules"]
    if not isinstance(modules, dict) or not modules:
        raise ManifestError(
            f"modules: expected a non-empty object of modules, got {shown(modules)}",
            field="modules",
        )

    checked = {}
    for name in sorted(modules, key=str):
        mf.check_name(name, f"modules[{shown(name)}]")
        checked[name] = _parse_patch_module(modules[name], f"modules.{name}")

    return {
        "format": mf.FORMAT,
        "patch_id": mf.check_pattern(
            doc["patch_id"], "patch_id", mf.PATCH_ID_RE, mf.EXPECT_PATCH_ID
        ),
        "product_version": mf.check_version(doc["product_version"], "product_version"),
        "modules": checked,
    }


def _parse_patch_module(value, field):
    mf.check_object(value, field, PATCH_MODULE_KEYS, PATCH_MODULE_OPTIONAL)
    module = {"version": mf.check_version(value["version"], f"{field}.version")}
    if "manifest_id" in value:
        module["manifest_id"] = mf.check_id(value["manifest_id"], f"{field}.manifest_id")
    if "target" in value:
        module["target"] = mf.check_target(value["target"], f"{field}.target")
    if "services" in value:
        module["services"] = mf.check_services(value["services"], f"{field}.services")

    module["files"] = mf.check_files(value.get("files", {}), f"{field}.files", allow_empty=True)
    remove = value.get("remove", [])
    if not isinstance(remove, list):
        raise ManifestError(
            f"{field}.remove: expected a list of paths, got {shown(remove)}", field=field
        )

    for index, path in enumerate(remove):
        mf.check_path(path, f"{field}.remove[{index}]")
        if path in module["files"]:
            raise ManifestError(
                f"{field}.remove[{index}]: {shown(path)} is also listed in files", field=field
            )
        if path in remove[:index]:
            raise ManifestError(
                f"{field}.remove[{index}]: {shown(path)} is listed twice", field=field
            )

    module["remove"] = sorted(remove)
    return module


def _extract_member(tar, member, name, dest):
    path = join_relative(dest, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    source = tar.extractfile(member)
    with source, open(path, "wb") as target:
        shutil.copyfileobj(source, target, 1024 * 1024)


def _member_kind(member):
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.ischr() or member.isblk():
        return "a device"
    if member.isfifo():
        return "a FIFO"
    return "not a regular file"


def extract_bundle(archive, dest):
    """Extract a .tar.gz bundle into dest, refusing anything but plain files and directories.

    The checks are made here rather than left to tarfile's extraction filters, which differ
    between the Python versions the collection supports: every name must be a safe relative
    path, and links, devices and FIFOs are refused before anything of them is written.
    """
    seen = set()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = member.name
                while name.startswith("./"):
                    name = name[2:]
                name = name.rstrip("/")
                if name in ("", "."):
                    continue

                try:
                    check_relative_path(name, "member")
                except PathError as error:
                    raise PatchError(f"{archive}: {error.message}", path=archive) from None

                if member.isdir():
                    os.makedirs(join_relative(dest, name), exist_ok=True)
                    continue

                if not member.isfile():
                    raise PatchError(
                        f"{archive}: member {shown(name)} is {_member_kind(member)}; a bundle "
                        f"holds only files and directories",
                        path=archive,
                    )

                if name in seen:
                    raise PatchError(f"{archive}: member {shown(name)} appears twice", path=archive)
                seen.add(name)
                _extract_member(tar, member, name, dest)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile):
        raise PatchError(
            f"{archive}: cannot extract the bundle: it is not a complete .tar.gz file",
            path=archive,
        ) from None
    except OSError as error:
        raise PatchError(
            f"{archive}: cannot extract the bundle: {error.strerror or error}", path=archive
        ) from None


def _bundle_root(directory, label):
    if os.path.isfile(os.path.join(directory, "patch.json")):
        return directory

    entries = os.listdir(directory)
    if len(entries) == 1:
        inner = os.path.join(directory, entries[0])
        if os.path.isdir(inner) and os.path.isfile(os.path.join(inner, "patch.json")):
            return inner

    raise PatchError(
        f"bundle {label}: no patch.json at its top or in its one top directory", path=label
    )


@contextlib.contextmanager
def open_bundle(bundle_path):
    """Yield the directory of a bundle; a .tar.gz is extracted to a temporary one first."""
    if os.path.isdir(bundle_path):
        yield _bundle_root(bundle_path, bundle_path)
        return

    if not os.path.isfile(bundle_path):
        raise PatchError(f"bundle {bundle_path}: no such directory or file", path=bundle_path)

    if not bundle_path.endswith((".tar.gz", ".tgz")):
        raise PatchError(
            f"bundle {bundle_path}: expected a directory or a .tar.gz file", path=bundle_path
        )

    with tempfile.TemporaryDirectory(prefix="prairiefyre-bundle-") as tmp:
        extract_bundle(bundle_path, tmp)
        yield _bundle_root(tmp, bundle_path)


def _bundle_inventory(files_dir, label):
    """Map every regular file under files/ to its path "module/path"; refuse links."""
    found = {}
    for current, dirs, names in os.walk(files_dir):
        for name in sorted(dirs + names):
            path = os.path.join(current, name)
            relative = os.path.relpath(path, files_dir).replace(os.sep, "/")
            if os.path.islink(path):
                raise PatchError(
                    f"bundle {label}: files/{relative} is a symbolic link; a bundle holds "
                    f"only files and directories",
                    path=label,
                )
            if name in names and not os.path.isfile(path):
                raise PatchError(
                    f"bundle {label}: files/{relative} is not a regular file", path=label
                )
            if name in names:
                found[relative] = path

    return found


def load_bundle(root, label):
    """Parse patch.json and verify every listed file's size and sha256; return (patch, sources).

    sources maps (module, path) to the file in the bundle. Files under files/ that patch.json
    does not list are refused too: they are most often a file the author forgot to list.
    """
    try:
        with open(os.path.join(root, "patch.json"), "rb") as handle:
            data = handle.read(mf.MAX_MANIFEST_BYTES + 1)
    except OSError as error:
        raise PatchError(
            f"bundle {label}: cannot read patch.json: {error.strerror}", path=label
        ) from None

    patch = parse_patch(data, source=f"bundle {label}: patch.json")
    found = _bundle_inventory(os.path.join(root, "files"), label)
    sources = {}
    for module, entry in patch["modules"].items():
        for path, meta in entry["files"].items():
            relative = f"{module}/{path}"
            source = found.pop(relative, None)
            if source is None:
                raise PatchError(
                    f"bundle {label}: files/{relative} is listed in patch.json but missing",
                    path=label,
                )
            _verify(source, meta, f"bundle {label}: files/{relative}", "patch.json")
            sources[(module, path)] = source

    if found:
        extra = sorted(found)[0]
        raise PatchError(
            f"bundle {label}: files/{extra} is not listed in patch.json", path=label, file=extra
        )

    return patch, sources


def _verify(path, meta, label, authority):
    size = os.path.getsize(path)
    if size != meta["size"]:
        raise PatchError(
            f"{label}: size is {size} bytes, {authority} says {meta['size']}", file=path
        )

    digest = sha256_file(path)
    if digest != meta["sha256"]:
        raise PatchError(
            f"{label}: sha256 is {digest}, {authority} says {meta['sha256']}", file=path
        )


def _check_applied(current, patch):
    """A patch already in the manifest's history: refuse only a bundle that changed since."""
    for name, entry in patch["modules"].items():
        have = current["modules"].get(name)
        wanted = entry.get("manifest_id")
        if have is None or wanted is None or wanted < have["manifest_id"]:
            continue

        if wanted > have["manifest_id"]:
            raise PatchError(
                f"patch {patch['patch_id']} is recorded as applied, but module {name} is at "
                f"manifest ID {have['manifest_id']}, below the patch's {wanted}",
                module=name,
            )

        same = entry["version"] == have["version"] and all(
            have["files"].get(path) == meta for path, meta in entry["files"].items()
        )
        if not same or any(path in have["files"] for path in entry["remove"]):
            raise PatchError(
                f"patch {patch['patch_id']} is already applied, but its module {name} differs "
                f"from the enterprise's manifest ID {wanted}; a changed bundle needs a new "
                f"patch_id",
                module=name,
            )


def _plan_module(name, entry, have, patch_id):
    if have is None:
        for key in ("manifest_id", "target", "services"):
            if key not in entry:
                raise PatchError(
                    f"patch {patch_id}: module {name} is new to the enterprise, so patch.json "
                    f'must give its "{key}"',
                    module=name,
                )
        if entry["remove"]:
            raise PatchError(
                f"patch {patch_id}: module {name} is new to the enterprise; it has no file "
                f"to remove",
                module=name,
            )
        files = dict(entry["files"])
        return entry["manifest_id"], {
            "manifest_id": entry["manifest_id"],
            "version": entry["version"],
            "target": entry["target"],
            "services": entry["services"],
            "files": files,
        }

    new_id = entry.get("manifest_id", have["manifest_id"] + 1)
    if new_id < have["manifest_id"]:
        raise PatchError(
            f"patch {patch_id}: module {name} would go from manifest ID {have['manifest_id']} "
            f"down to {new_id}; refusing the downgrade",
            module=name,
        )
    if new_id == have["manifest_id"]:
        raise PatchError(
            f"patch {patch_id}: module {name} is already at manifest ID {new_id}; a patch must "
            f"raise it",
            module=name,
        )

    if "target" in entry and entry["target"] != have["target"]:
        raise PatchError(
            f"patch {patch_id}: module {name} has the target {shown(have['target'])}, not "
            f"{shown(entry['target'])}; a patch cannot move a module",
            module=name,
        )

    for path in entry["remove"]:
        if path not in have["files"]:
            raise PatchError(
                f"patch {patch_id}: module {name} has no file {shown(path)} to remove",
                module=name,
            )

    files = {path: meta for path, meta in have["files"].items() if path not in entry["remove"]}
    files.update(entry["files"])
    return new_id, {
        "manifest_id": new_id,
        "version": entry["version"],
        "target": have["target"],
        "services": entry.get("services", have["services"]),
        "files": dict(sorted(files.items())),
    }


def plan_patch(current, patch):
    """Return (manifest after the patch, [{module, old_id, new_id}]); ([], current) if applied.

    current is the validated enterprise manifest, or None before the first (base) bundle.
    """
    if current is not None and patch["patch_id"] in current["patches"]:
        _check_applied(current, patch)
        return current, []

    modules = dict(current["modules"]) if current else {}
    changes = []
    for name, entry in patch["modules"].items():
        have = modules.get(name)
        new_id, modules[name] = _plan_module(name, entry, have, patch["patch_id"])
        changes.append(
            {"module": name, "old_id": have["manifest_id"] if have else None, "new_id": new_id}
        )

    after = {
        "format": mf.FORMAT,
        "serial": current["serial"] + 1 if current else 1,
        "product_version": patch["product_version"],
        "patches": (current["patches"] if current else []) + [patch["patch_id"]],
        "modules": modules,
    }
    try:
        after = mf.parse_manifest(after)
    except ManifestError as error:
        raise PatchError(
            f"patch {patch['patch_id']} would make an invalid manifest: {error.message}",
            **error.context,
        ) from None
    return after, changes


@contextlib.contextmanager
def _locked(dist_dir):
    """Hold dist_dir's lock file: two patches applied at once would both bump the same IDs."""
    if fcntl is None:
        yield
        return

    with open(os.path.join(dist_dir, LOCK_NAME), "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise PatchError(
                f"another patch is being applied to {dist_dir} (it holds {LOCK_NAME})",
                path=dist_dir,
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _build_package(name, module, have, *, sources, dist_dir, tmp):
    """Write the module's complete file set under tmp/name and verify every copy."""
    package = os.path.join(tmp, name)
    old_package = (
        os.path.join(dist_dir, PACKAGES_DIR, name, str(have["manifest_id"])) if have else None
    )
    for path, meta in module["files"].items():
        source = sources.get((name, path))
        label = f"bundle file files/{name}/{path}"
        if source is None:
            source = join_relative(old_package, path)
            label = f"{dist_dir}/{PACKAGES_DIR}/{name}/{have['manifest_id']}/{path}"

        target = join_relative(package, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            size, digest = copy_file(source, target)
        except OSError as error:
            raise PatchError(f"cannot copy {label}: {error.strerror}", file=source) from None
        if (size, digest) != (meta["size"], meta["sha256"]):
            raise PatchError(
                f"{label} changed or is damaged: it has {size} bytes and sha256 {digest}, the "
                f"manifest says {meta['size']} bytes and {meta['sha256']}",
                file=source,
            )

    return package


def _install_packages(dist_dir, after, current, changes, sources):
    """Build every new package, then rename each into place; return the directories added."""
    added = []
    tmp = tempfile.mkdtemp(prefix=".patch-", dir=dist_dir)
    try:
        built = []
        for change in changes:
            name = change["module"]
            have = current["modules"].get(name) if current else None
            module = after["modules"][name]
            package = _build_package(
                name, module, have, sources=sources, dist_dir=dist_dir, tmp=tmp
            )
            built.append((name, package))

        for (name, package), change in zip(built, changes):
            parent = os.path.join(dist_dir, PACKAGES_DIR, name)
            final = os.path.join(parent, str(change["new_id"]))
            os.makedirs(parent, exist_ok=True)
            if os.path.exists(final):
                # Left by a run that failed before its manifest was written: no manifest names
                # this ID yet, because IDs only grow, so nobody can be reading it.
                shutil.rmtree(final)
            os.rename(package, final)
            added.append(final)
            fsync_dir(parent)
    except BaseException:
        for final in added:
            shutil.rmtree(final, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    return added


def _read_optional(path):
    try:
        with open(path, "rb") as handle:
            return handle.read(mf.MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise PatchError(f"cannot read {path}: {error.strerror}", path=path) from None


def read_dist_manifest(dist_dir):
    """The enterprise manifest in dist_dir, or None before the first bundle."""
    return read_dist(dist_dir)[0]


def read_dist(dist_dir):
    """(manifest, its bytes, the signature file's bytes) of dist_dir; None for what is missing."""
    path = os.path.join(dist_dir, MANIFEST_NAME)
    data = _read_optional(path)
    sig_data = _read_optional(os.path.join(dist_dir, SIGNATURE_NAME))
    if data is None:
        return None, None, sig_data
    return mf.parse_manifest(data, source=f"enterprise manifest {path}"), data, sig_data


def _signature_plan(dist_dir, data, sig_data, key, writes):
    """Decide whether this run signs; refuse what would leave hosts a manifest they reject.

    Returns True when the manifest (the new one, or the current one when the patch is already
    applied) gets a new signature file. Without a key, a dist that is signed cannot take an
    unsigned manifest: every host that trusts the key would refuse it. With a key, a current
    manifest that this key signed must still match its signature: signing it again would bless
    a change nobody signed. A signature by another key is a key rotation and is replaced.
    """
    sig_path = os.path.join(dist_dir, SIGNATURE_NAME)
    if key is None:
        if sig_data is not None and writes:
            raise PatchError(
                f"{sig_path} exists: the enterprise signs its manifest, so give signing_key to "
                f"sign the patched one (or remove {SIGNATURE_NAME} to stop signing)",
                path=sig_path,
            )
        return False

    if sig_data is None or data is None:
        return writes or data is not None

    label = f"signature file {sig_path}"
    try:
        sigfile = signing.parse_signature_file(sig_data, label)
    except SignatureError as error:
        raise PatchError(
            f"{error.message}; restore it or remove it before signing again", path=sig_path
        ) from None
    if sigfile["key_id"] != key.key_id:
        return True

    try:
        signing.check_signature(key, data, sig_data, label)
    except SignatureError as error:
        raise PatchError(
            f"{os.path.join(dist_dir, MANIFEST_NAME)} does not match its signature by key "
            f"{key.key_id} ({error.message}); refusing to sign it again: restore the signed "
            f"manifest or remove {SIGNATURE_NAME}",
            path=sig_path,
        ) from None
    return writes


def apply_patch(dist_dir, bundle_path, check_mode=False, signing_key=None):
    """Apply the bundle at bundle_path (directory or .tar.gz) to dist_dir.

    Returns dict(changed, patch_id, modules=[{module, old_id, new_id}], manifest, before,
    after, signed, key_id): manifest and after are the manifest once the patch is in, before
    the one found (None when dist_dir had none); signed tells whether a signature file was (or
    in check mode would be) written. In check mode the bundle is verified and the plan
    computed, and nothing in dist_dir is written.

    signing_key (a signing.SigningKey) signs the new manifest; it also signs an already
    applied patch's manifest that this key has not signed yet.
    """
    with open_bundle(bundle_path) as root:
        patch, sources = load_bundle(root, bundle_path)

        if not check_mode:
            try:
                os.makedirs(dist_dir, exist_ok=True)
            except OSError as error:
                raise PatchError(f"cannot create {dist_dir}: {error}", path=dist_dir) from None
        lock = _locked(dist_dir) if not check_mode else contextlib.nullcontext()
        with lock:
            before, data, sig_data = (
                read_dist(dist_dir) if os.path.isdir(dist_dir) else (None, None, None)
            )
            after, changes = plan_patch(before, patch)
            sign = _signature_plan(dist_dir, data, sig_data, signing_key, bool(changes))
            result = {
                "changed": bool(changes) or sign,
                "patch_id": patch["patch_id"],
                "modules": changes,
                "manifest": after,
                "before": before,
                "after": after,
                "signed": sign,
                "key_id": signing_key.key_id if signing_key else None,
            }
            if check_mode or not result["changed"]:
                return result

            if changes:
                _write(
                    dist_dir,
                    after,
                    before,
                    changes,
                    sources,
                    key=signing_key,
                    data=data,
                    sig_data=sig_data,
                )
            else:
                _write_signature(dist_dir, signing_key, [data])
            return result


def _write_signature(dist_dir, key, manifests):
    path = os.path.join(dist_dir, SIGNATURE_NAME)
    try:
        write_json_atomic(path, signing.make_signature_file(key, manifests))
    except OSError as error:
        raise PatchError(f"cannot write {path}: {error}", path=path) from None


def _restore_signature(dist_dir, sig_data):
    """Put back the signature file a failed manifest write found."""
    path = os.path.join(dist_dir, SIGNATURE_NAME)
    if sig_data is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    else:
        write_bytes_atomic(path, sig_data)


def _write(dist_dir, after, before, changes, sources, *, key=None, data=None, sig_data=None):
    try:
        added = _install_packages(dist_dir, after, before, changes, sources)
    except OSError as error:
        raise PatchError(
            f"cannot write the packages in {dist_dir}: {error}", path=dist_dir
        ) from None

    manifest_path = os.path.join(dist_dir, MANIFEST_NAME)
    new_data = dump_json(after).encode("utf-8")
    signed = False
    try:
        if key is not None:
            # The signature file goes first and signs both manifests: a reader that already
            # holds the old manifest, or gets the new one from now on, finds its signature.
            _write_signature(dist_dir, key, [new_data] + ([data] if data else []))
            signed = True
        write_bytes_atomic(manifest_path, new_data)
    except BaseException as error:
        for final in added:
            shutil.rmtree(final, ignore_errors=True)
        if signed:
            _restore_signature(dist_dir, sig_data)
        if isinstance(error, OSError):
            raise PatchError(f"cannot write {manifest_path}: {error}", path=dist_dir) from None
        raise
