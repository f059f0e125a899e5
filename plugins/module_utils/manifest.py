# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The enterprise manifest and the host record (format 1): parse, validate, load, compare, record.

docs/manifest.md is the reference of both formats and of every message raised here. The parse
functions return new plain dicts in a fixed key order, so callers never alias their input and a
manifest written back out reads the same way every time.
"""

import datetime
import ipaddress
import json
import os
import re
import socket
import urllib.error
from urllib.parse import urlsplit

from ansible_collections.prairiefyre.updater.plugins.module_utils import signing
from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import (
    DowngradeError,
    ManifestError,
    PathError,
    ReplayError,
    SignatureError,
    shown,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.fileio import (
    check_relative_path,
    is_within,
    write_json_atomic,
)

FORMAT = 1
SERVICES = ("IVR Inbound", "IVR Outbound", "IVR UpIQ")
STATE_DIR = ".updater"
RECORD_NAME = "manifest.json"

# A real manifest is a few kilobytes; the cap keeps a wrong URL (a disk image, a log) from
# being read into memory whole.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024

NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
VERSION_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}")
PATCH_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")

MANIFEST_KEYS = ("format", "serial", "product_version", "patches", "modules")
MODULE_KEYS = ("manifest_id", "version", "target", "services", "files")
FILE_KEYS = ("size", "sha256")
RECORD_KEYS = ("format", "serial", "modules")
RECORD_MODULE_KEYS = ("manifest_id", "version", "updated")

EXPECT_NAME = "a name of lowercase letters, digits and _ that starts with a letter"
EXPECT_VERSION = "a version of letters, digits and . + _ - (at most 64)"
EXPECT_PATCH_ID = "a patch ID of letters, digits and . _ - (at most 100)"


def _fail(field, expected, value):
    raise ManifestError(
        f"{field}: expected {expected}, got {shown(value)}", field=field, value=value
    )


def _child(field, key):
    """Name a member for a message: a.b for plain keys, a["x/y"] for keys that hold paths."""
    if isinstance(key, str) and NAME_RE.fullmatch(key):
        return f"{field}.{key}" if field else key
    return f"{field}[{shown(key)}]"


def check_object(value, field, required, optional=()):
    """Return value when it is a dict with every required key and no key outside both lists."""
    if not isinstance(value, dict):
        _fail(field, "an object", value)

    for key in required:
        if key not in value:
            raise ManifestError(f'{field}: missing key "{key}"', field=field)

    for key in value:
        if key not in required and key not in optional:
            raise ManifestError(f"{field}: unknown key {shown(key)}", field=field, value=key)

    return value


def check_id(value, field):
    """A manifest ID or serial: an integer >= 0 (JSON true/false and 1.0 are refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _fail(field, "an integer >= 0", value)
    return value


def check_pattern(value, field, pattern, expected):
    if not isinstance(value, str) or not pattern.fullmatch(value):
        _fail(field, expected, value)
    return value


def check_name(value, field):
    return check_pattern(value, field, NAME_RE, EXPECT_NAME)


def check_version(value, field):
    return check_pattern(value, field, VERSION_RE, EXPECT_VERSION)


def check_path(value, field):
    """A safe relative path (see fileio.check_relative_path), reported as a ManifestError."""
    try:
        return check_relative_path(value, field)
    except PathError as error:
        raise ManifestError(error.message, **error.context) from None


def check_services(value, field):
    if not isinstance(value, list) or not value:
        _fail(field, "a non-empty list of service names", value)

    known = ", ".join(shown(name) for name in SERVICES)
    for index, name in enumerate(value):
        if name not in SERVICES:
            _fail(f"{field}[{index}]", f"one of {known}", name)
        if name in value[:index]:
            raise ManifestError(f"{field}[{index}]: {shown(name)} is listed twice", field=field)

    return list(value)


def check_files(value, field, allow_empty=False):
    """A dict of path -> {size, sha256}; returns a copy sorted by path."""
    if not isinstance(value, dict) or (not value and not allow_empty):
        _fail(field, "an object of files" if allow_empty else "a non-empty object of files", value)

    files = {}
    for path in sorted(value, key=str):
        entry_field = _child(field, path)
        check_path(path, entry_field)
        entry = check_object(value[path], entry_field, FILE_KEYS)
        files[path] = {
            "size": check_id(entry["size"], f"{entry_field}.size"),
            "sha256": check_pattern(
                entry["sha256"], f"{entry_field}.sha256", SHA256_RE, "64 lowercase hex digits"
            ),
        }

    check_path_set(files, field)
    return files


def check_path_set(paths, field):
    """Refuse paths that cannot live side by side in one directory tree.

    A file cannot also be a directory of another listed file, and two names that differ only
    in letter case are one file on the Windows servers the product runs on.
    """
    seen = {}
    for path in sorted(paths):
        folded = path.casefold()
        if folded in seen:
            raise ManifestError(
                f"{field}: {shown(seen[folded])} and {shown(path)} differ only in letter case",
                field=field,
                value=path,
            )
        seen[folded] = path

    for path in paths:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in paths:
                raise ManifestError(
                    f"{field}: {shown(parent)} is listed as a file and as the directory of "
                    f"{shown(path)}",
                    field=field,
                    value=path,
                )


def check_target(value, field):
    """A module's directory: a safe relative path outside the updater's own state directory."""
    check_path(value, field)
    if is_within(value.casefold(), STATE_DIR):
        _fail(field, f'a directory outside "{STATE_DIR}"', value)
    return value


def check_targets(modules, field="modules"):
    """Refuse two modules whose directories are the same or nest: a swap of one moves both."""
    names = sorted(modules)
    for index, name in enumerate(names):
        target = modules[name]["target"].casefold()
        for other in names[:index]:
            other_target = modules[other]["target"].casefold()
            if is_within(target, other_target) or is_within(other_target, target):
                raise ManifestError(
                    f"{field}.{name}.target: {shown(modules[name]['target'])} overlaps the "
                    f"target {shown(modules[other]['target'])} of module {other}",
                    field=f"{field}.{name}.target",
                    value=modules[name]["target"],
                )


def check_module(value, field):
    """One manifest module, returned as a new dict in the documented key order."""
    check_object(value, field, MODULE_KEYS)
    return {
        "manifest_id": check_id(value["manifest_id"], f"{field}.manifest_id"),
        "version": check_version(value["version"], f"{field}.version"),
        "target": check_target(value["target"], f"{field}.target"),
        "services": check_services(value["services"], f"{field}.services"),
        "files": check_files(value["files"], f"{field}.files"),
    }


def check_patch_ids(value, field):
    if not isinstance(value, list):
        _fail(field, "a list of patch IDs", value)

    for index, patch_id in enumerate(value):
        check_pattern(patch_id, f"{field}[{index}]", PATCH_ID_RE, EXPECT_PATCH_ID)
        if patch_id in value[:index]:
            raise ManifestError(f"{field}[{index}]: {shown(patch_id)} is listed twice", field=field)

    return list(value)


def check_format(value, field="format"):
    if isinstance(value, bool) or value != FORMAT:
        raise ManifestError(
            f"{field}: expected {FORMAT} (the only format this collection reads), got "
            f"{shown(value)}",
            field=field,
            value=value,
        )
    return FORMAT


def _check_format_first(doc, field):
    """Check "format" before anything else: a newer format is reported as such, not as the
    first key this reader happens not to know."""
    if not isinstance(doc, dict):
        _fail(field, "an object", doc)
    if "format" in doc:
        check_format(doc["format"])


def _no_duplicate_keys(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise ManifestError(f"invalid JSON: duplicate key {shown(key)}", value=key)
        result[key] = value
    return result


def _no_constant(name):
    raise ManifestError(f"invalid JSON: {name} is not a number JSON allows", value=name)


def load_json(data):
    """Decode a JSON document from bytes or str; dicts pass through untouched.

    Duplicate keys are an error rather than last-one-wins, so a manifest edited by hand cannot
    say two things about one module and have the reader pick one silently. A UTF-8 byte order
    mark, which Windows editors add, is accepted.
    """
    if isinstance(data, dict):
        return data

    if isinstance(data, (bytes, bytearray)):
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"the document is larger than {MAX_MANIFEST_BYTES} bytes")
        try:
            data = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise ManifestError(f"the document is not UTF-8 (byte {error.start})") from None

    if not isinstance(data, str):
        raise ManifestError(f"expected JSON text, bytes or a dict, got {type(data).__name__}")

    try:
        return json.loads(data, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise ManifestError(
            f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None


def parse_document(data, parse, source=None):
    """Run parse on the decoded document; prefix any message with source when one is given."""
    try:
        return parse(load_json(data))
    except ManifestError as error:
        if not source:
            raise
        context = dict(error.context, source=source)
        raise ManifestError(f"{source}: {error.message}", **context) from None


def parse_manifest(data, source=None):
    """Validate an enterprise manifest (bytes, str or dict) and return a normalized copy.

    source, when given, prefixes every message (e.g. "enterprise manifest /dist/manifest.json").
    """
    return parse_document(data, _parse_manifest, source)


def _parse_manifest(doc):
    _check_format_first(doc, "manifest")
    check_object(doc, "manifest", MANIFEST_KEYS)
    modules = doc["modules"]
    if not isinstance(modules, dict):
        _fail("modules", "an object of modules", modules)

    checked = {}
    for name in sorted(modules, key=str):
        check_name(name, _child("modules", name))
        checked[name] = check_module(modules[name], f"modules.{name}")

    check_targets(checked)
    return {
        "format": FORMAT,
        "serial": check_id(doc["serial"], "serial"),
        "product_version": check_version(doc["product_version"], "product_version"),
        "patches": check_patch_ids(doc["patches"], "patches"),
        "modules": checked,
    }


def new_record():
    return {"format": FORMAT, "serial": 0, "modules": {}}


def parse_record(data, source=None):
    """Validate a host record (bytes, str or dict) and return a normalized copy."""
    return parse_document(data, _parse_record, source)


def _parse_record(doc):
    _check_format_first(doc, "record")
    check_object(doc, "record", RECORD_KEYS)
    modules = doc["modules"]
    if not isinstance(modules, dict):
        _fail("modules", "an object of modules", modules)

    checked = {}
    for name in sorted(modules, key=str):
        check_name(name, _child("modules", name))
        field = f"modules.{name}"
        entry = check_object(modules[name], field, RECORD_MODULE_KEYS)
        checked[name] = {
            "manifest_id": check_id(entry["manifest_id"], f"{field}.manifest_id"),
            "version": check_version(entry["version"], f"{field}.version"),
            "updated": check_pattern(
                entry["updated"],
                f"{field}.updated",
                TIMESTAMP_RE,
                "a UTC time YYYY-MM-DDTHH:MM:SSZ",
            ),
        }

    return {"format": FORMAT, "serial": check_id(doc["serial"], "serial"), "modules": checked}


def is_url(src):
    return src.lower().startswith(("http://", "https://"))


def _is_loopback(url):
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_fetcher(validate_certs=True, timeout=30, opener=None):
    """Return fetch(url) -> bytes built on ansible.module_utils.urls.open_url.

    A loopback URL never goes through a proxy from the environment: the proxy's loopback is
    not this machine's. opener replaces open_url in tests.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ManifestError(
            f"timeout: expected a number of seconds > 0, got {shown(timeout)}", value=timeout
        )

    if opener is None:
        # Imported here, not at the top: ansible.module_utils.urls loads ssl and cryptography,
        # about a tenth of a second per module run, and most runs (every comparison of a host
        # with a manifest the controller read) fetch nothing (docs/performance.md).
        from ansible.module_utils.urls import open_url as opener  # noqa: PLC0415

    def fetch(url):
        try:
            response = opener(
                url,
                method="GET",
                validate_certs=validate_certs,
                timeout=timeout,
                use_proxy=not _is_loopback(url),
                http_agent="prairiefyre.updater",
                follow_redirects="safe",
            )
            data = response.read(MAX_MANIFEST_BYTES + 1)
        except urllib.error.HTTPError as error:
            raise ManifestError(
                f"cannot fetch {url}: HTTP {error.code} {error.reason}", url=url, status=error.code
            ) from None
        except urllib.error.URLError as error:
            raise ManifestError(f"cannot fetch {url}: {error.reason}", url=url) from None
        except (socket.timeout, TimeoutError):
            raise ManifestError(
                f"cannot fetch {url}: no answer within {timeout} seconds", url=url
            ) from None
        except OSError as error:
            raise ManifestError(f"cannot fetch {url}: {error}", url=url) from None

        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError(
                f"cannot fetch {url}: the answer is larger than {MAX_MANIFEST_BYTES} bytes", url=url
            )
        return data

    return fetch


def read_source(src, fetch=None):
    """Return the bytes of a local path or an http(s) URL.

    fetch is any callable(url) -> bytes; without one, make_fetcher()'s defaults apply.
    """
    if not isinstance(src, str) or not src:
        raise ManifestError(f"expected a path or an http(s) URL, got {shown(src)}", value=src)

    if is_url(src):
        return (fetch or make_fetcher())(src)

    if "://" in src:
        raise ManifestError(
            f"cannot read {src}: only http:// and https:// URLs or local paths are supported",
            value=src,
        )

    try:
        with open(src, "rb") as handle:
            return handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError as error:
        raise ManifestError(f"cannot read {src}: {error.strerror}", path=src) from None


def signature_src(src):
    """Where the signature file of the manifest at src is: the same path or URL plus ".sig"."""
    return src + signing.SIGNATURE_SUFFIX


def _read_signature(src, fetch):
    sig_src = signature_src(src)
    try:
        return read_source(sig_src, fetch)
    except ManifestError as error:
        raise SignatureError(
            f"enterprise manifest {src}: it has no readable signature, and a host that trusts a "
            f"key refuses an unsigned manifest: {error.message}",
            source=f"enterprise manifest {src}",
            **error.context,
        ) from None


def verify_manifest(src, data, key, fetch=None):
    """Return the manifest bytes once key's signature of them is found next to src.

    The manifest is read before its signature, and the enterprise writes the signature file
    (holding the new and the previous manifest's signatures) before the manifest, so the pair
    matches even when a patch lands between the two reads. Only a reader that falls two patches
    behind misses; it reads both once more before it refuses.
    """
    for attempt in (1, 2):
        sig_data = _read_signature(src, fetch)
        try:
            signing.check_signature(key, data, sig_data, f"signature file {signature_src(src)}")
            return data
        except SignatureError as error:
            if attempt == 1 and "sha256" in error.context:
                data = read_source(src, fetch)
                continue
            raise SignatureError(
                f"enterprise manifest {src}: {error.message}",
                source=f"enterprise manifest {src}",
                **error.context,
            ) from None
    return data


def load_manifest(src, fetch=None, key=None):
    """Read and validate the enterprise manifest at a local path or http(s) URL.

    With key (a signing.VerifyKey), the manifest must carry that key's signature; it is
    checked before the manifest is parsed, so an unsigned document is refused as unsigned
    whatever it holds.
    """
    data = read_source(src, fetch)
    if key is not None:
        data = verify_manifest(src, data, key, fetch)
    return parse_manifest(data, source=f"enterprise manifest {src}")


def record_path(install_root):
    return os.path.join(install_root, STATE_DIR, RECORD_NAME)


def load_record(path):
    """Read and validate a host record; a missing file means a host with nothing recorded."""
    if not os.path.exists(path):
        return None
    return parse_record(read_source(path), source=f"host record {path}")


def write_record(install_root, record):
    """Validate record and write it atomically to <install_root>/.updater/manifest.json."""
    record = parse_record(record, source="host record")
    os.makedirs(os.path.join(install_root, STATE_DIR), mode=0o755, exist_ok=True)
    write_json_atomic(record_path(install_root), record)
    return record


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_module(
    install_root, module, manifest_id, version, *, serial=None, check_mode=False, now=None
):
    """Record that module now runs manifest_id/version on the host; return (changed, record).

    The host record is rewritten atomically, keeping the other modules' entries. An entry that
    already holds this ID and version is left alone (its "updated" time included), so a repeated
    commit reports no change. serial, when given, becomes the record's serial: the enterprise
    serial the host last caught up with. In check mode nothing is written.
    """
    check_name(module, "module")
    check_id(manifest_id, "manifest_id")
    check_version(version, "version")
    if serial is not None:
        check_id(serial, "serial")

    record = load_record(record_path(install_root)) or new_record()
    entry = record["modules"].get(module)
    same_entry = bool(entry) and (entry["manifest_id"], entry["version"]) == (manifest_id, version)
    if same_entry and serial in (None, record["serial"]):
        return False, record

    record["modules"][module] = {
        "manifest_id": manifest_id,
        "version": version,
        "updated": entry["updated"] if same_entry else (now or utc_now()),
    }
    if serial is not None:
        record["serial"] = serial
    record["modules"] = dict(sorted(record["modules"].items()))

    if not check_mode:
        record = write_record(install_root, record)
    return True, record


def compare(enterprise, local_record, allow_downgrade=False, modules=None):
    """Return the updates a host needs, one per module, in module name order.

    enterprise is a validated manifest; local_record a validated host record or None (a host
    with nothing recorded needs every module). modules limits the comparison to these names.
    A manifest whose serial is lower than the recorded one raises ReplayError, and a module
    whose enterprise ID is lower than the recorded one DowngradeError, unless allow_downgrade
    is true: then the modules are returned like any other update.
    """
    names = sorted(enterprise["modules"])
    if modules:
        unknown = [name for name in modules if name not in enterprise["modules"]]
        if unknown:
            raise ManifestError(
                f"modules: {shown(unknown[0])} is not a module of the enterprise manifest "
                f"(it has {', '.join(names) or 'none'})",
                field="modules",
                value=unknown[0],
            )
        names = [name for name in names if name in modules]

    local_record = local_record or new_record()
    if enterprise["serial"] < local_record["serial"] and not allow_downgrade:
        raise ReplayError(
            f"the enterprise manifest has serial {enterprise['serial']}, lower than the serial "
            f"{local_record['serial']} this host last installed from; refusing an older manifest, "
            f"which is a replay or a rolled-back enterprise (set allow_downgrade to accept it)",
            serial=enterprise["serial"],
            recorded_serial=local_record["serial"],
        )

    recorded = local_record["modules"]
    updates = []
    for name in names:
        offered = enterprise["modules"][name]
        entry = recorded.get(name)
        old_id = entry["manifest_id"] if entry else None
        if old_id == offered["manifest_id"]:
            continue

        if old_id is not None and offered["manifest_id"] < old_id and not allow_downgrade:
            raise DowngradeError(
                f"module {name}: the enterprise offers manifest ID {offered['manifest_id']}, "
                f"lower than the {old_id} the host has recorded; refusing the downgrade "
                f"(set allow_downgrade to install it)",
                module=name,
                old_id=old_id,
                new_id=offered["manifest_id"],
            )

        updates.append(
            {
                "module": name,
                "old_id": old_id,
                "new_id": offered["manifest_id"],
                "old_version": entry["version"] if entry else None,
                "new_version": offered["version"],
                "target": offered["target"],
                "services": list(offered["services"]),
                "files": {path: dict(meta) for path, meta in offered["files"].items()},
            }
        )

    return updates


def services_of(updates):
    """The services the updates stop and start, each once, in the product's order."""
    wanted = {service for update in updates for service in update["services"]}
    return [service for service in SERVICES if service in wanted]
