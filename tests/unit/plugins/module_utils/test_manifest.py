# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Manifest and host record: parse, load, compare, record; and the fileio helpers they use."""

import copy
import hashlib
import json
import os
import socket
import urllib.error

import pytest
from ansible_collections.prairiefyre.updater.plugins.module_utils import fileio
from ansible_collections.prairiefyre.updater.plugins.module_utils import manifest as mf
from ansible_collections.prairiefyre.updater.plugins.module_utils import signing
from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import (
    DowngradeError,
    ManifestError,
    PathError,
    ReplayError,
    SignatureError,
    UpdaterError,
)

SHA_A = "a" * 64
SHA_B = "b" * 64
DELETE = object()


def module_entry(manifest_id, target, services, version="6.3.2.0"):
    return {
        "manifest_id": manifest_id,
        "version": version,
        "target": target,
        "services": services,
        "files": {
            "version.txt": {"size": 8, "sha256": SHA_A},
            "bin/Module.dll": {"size": 1024, "sha256": SHA_B},
        },
    }


def good_manifest():
    return {
        "format": 1,
        "serial": 2,
        "product_version": "6.3.2.0",
        "patches": ["base-6.3.1", "sample-6.3.2"],
        "modules": {
            "ivr_inbound": module_entry(1001, "IVR/Inbound", ["IVR Inbound"]),
            "ivr_outbound": module_entry(2000, "IVR/Outbound", ["IVR Outbound"], "6.3.1.0"),
            "ivr_upiq": module_entry(3001, "IVR/UpIQ", ["IVR UpIQ"]),
        },
    }


def good_record():
    return {
        "format": 1,
        "serial": 1,
        "modules": {
            "ivr_inbound": {
                "manifest_id": 1000,
                "version": "6.3.1.0",
                "updated": "2026-12-01T10:00:00Z",
            },
            "ivr_outbound": {
                "manifest_id": 2000,
                "version": "6.3.1.0",
                "updated": "2026-12-01T10:00:00Z",
            },
            "ivr_upiq": {
                "manifest_id": 3000,
                "version": "6.3.1.0",
                "updated": "2026-12-01T10:00:00Z",
            },
        },
    }


def changed(doc, path, value):
    """A deep copy of doc with the key at path (a tuple) set to value, or removed by DELETE."""
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


INBOUND = ("modules", "ivr_inbound")

# --- fileio ------------------------------------------------------------------------------------

SAFE_PATHS = ["version.txt", "IVR/Inbound", "a/b/c.dll", "name with spaces.txt", "..hidden", "a.."]


@pytest.mark.parametrize("path", SAFE_PATHS)
def test_safe_relative_path_is_accepted(path):
    assert fileio.check_relative_path(path) == path


UNSAFE_PATHS = [
    ("empty", "", 'path: expected a non-empty relative path, got ""'),
    ("not a string", 5, "path: expected a non-empty relative path, got 5"),
    ("parent", "../x", 'path: expected a safe relative path, got "../x" (it climbs out with "..")'),
    (
        "parent inside",
        "a/../../x",
        'path: expected a safe relative path, got "a/../../x" (it climbs out with "..")',
    ),
    (
        "absolute",
        "/etc/passwd",
        'path: expected a safe relative path, got "/etc/passwd" (it is absolute)',
    ),
    (
        "drive with backslash",
        "C:\\Windows",
        'path: expected a safe relative path, got "C:\\\\Windows" (it starts with a drive letter)',
    ),
    (
        "drive relative",
        "C:x",
        'path: expected a safe relative path, got "C:x" (it starts with a drive letter)',
    ),
    (
        "backslash",
        "IVR\\Inbound",
        'path: expected a safe relative path, got "IVR\\\\Inbound" (it contains a backslash; '
        "separate directories with /)",
    ),
    (
        "NUL",
        "a\x00b",
        'path: expected a safe relative path, got "a\\u0000b" (it contains a NUL or control '
        "character)",
    ),
    (
        "newline",
        "a\nb",
        'path: expected a safe relative path, got "a\\nb" (it contains a NUL or control character)',
    ),
    (
        "dot",
        "./a",
        'path: expected a safe relative path, got "./a" (it has an empty or "." component)',
    ),
    (
        "double slash",
        "a//b",
        'path: expected a safe relative path, got "a//b" (it has an empty or "." component)',
    ),
    (
        "trailing slash",
        "a/",
        'path: expected a safe relative path, got "a/" (it has an empty or "." component)',
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("path", "message"), [case[1:] for case in UNSAFE_PATHS], ids=[case[0] for case in UNSAFE_PATHS]
)
def test_unsafe_relative_path_is_refused(path, message):
    with pytest.raises(PathError) as raised:
        fileio.check_relative_path(path)

    assert str(raised.value) == message


def test_sha256_file_reads_past_one_chunk(tmp_path):
    data = b"x" * (fileio.CHUNK_SIZE + 3)
    path = tmp_path / "big.bin"
    path.write_bytes(data)

    assert fileio.sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_write_json_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("old", encoding="utf-8")

    fileio.write_json_atomic(str(path), {"b": 1, "a": ["é"]})

    assert path.read_text(encoding="utf-8") == '{\n  "b": 1,\n  "a": [\n    "é"\n  ]\n}\n'
    assert sorted(os.listdir(tmp_path)) == ["manifest.json"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "manifest.json"
    path.write_text("old", encoding="utf-8")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, "replace", broken_replace)
    with pytest.raises(OSError):
        fileio.write_text_atomic(str(path), "new")

    assert path.read_text(encoding="utf-8") == "old"
    assert sorted(os.listdir(tmp_path)) == ["manifest.json"]


def test_copy_file_returns_size_and_hash_of_the_copy(tmp_path):
    src = tmp_path / "a"
    src.write_bytes(b"6.3.2.0\n")

    result = fileio.copy_file(str(src), str(tmp_path / "b"))

    assert result == (8, "30bd666004b604c47a20fa3b071114632d4c3f7e05df1cc9d186cb17cf484412")
    assert (tmp_path / "b").read_bytes() == b"6.3.2.0\n"


# --- parse_manifest ----------------------------------------------------------------------------


def test_good_manifest_is_returned_normalized():
    doc = good_manifest()
    doc["modules"]["ivr_inbound"]["files"] = {
        "z.txt": {"sha256": SHA_A, "size": 1},
        "a.txt": {"size": 2, "sha256": SHA_B},
    }

    result = mf.parse_manifest(json.dumps(doc).encode())

    assert list(result) == ["format", "serial", "product_version", "patches", "modules"]
    assert list(result["modules"]["ivr_inbound"]["files"]) == ["a.txt", "z.txt"]
    assert result["modules"]["ivr_inbound"]["files"]["z.txt"] == {"size": 1, "sha256": SHA_A}


@pytest.mark.parametrize(
    "data",
    [
        json.dumps(good_manifest()),
        json.dumps(good_manifest()).encode("utf-8"),
        b"\xef\xbb\xbf" + json.dumps(good_manifest()).encode("utf-8"),
        good_manifest(),
    ],
    ids=["str", "bytes", "bytes with BOM", "dict"],
)
def test_manifest_is_read_from_any_form(data):
    assert mf.parse_manifest(data) == good_manifest()


def test_parse_does_not_alias_its_input():
    doc = good_manifest()

    result = mf.parse_manifest(doc)
    result["modules"]["ivr_inbound"]["services"].append("IVR UpIQ")

    assert doc["modules"]["ivr_inbound"]["services"] == ["IVR Inbound"]


BAD_MANIFESTS = [
    ("top level list", "[]", "manifest: expected an object, got []"),
    (
        "format 2",
        changed(good_manifest(), ("format",), 2),
        "format: expected 1 (the only format this collection reads), got 2",
    ),
    (
        "format true",
        changed(good_manifest(), ("format",), True),
        "format: expected 1 (the only format this collection reads), got true",
    ),
    (
        "missing serial",
        changed(good_manifest(), ("serial",), DELETE),
        'manifest: missing key "serial"',
    ),
    (
        "unknown key",
        changed(good_manifest(), ("signature",), "x"),
        'manifest: unknown key "signature"',
    ),
    (
        "serial negative",
        changed(good_manifest(), ("serial",), -1),
        "serial: expected an integer >= 0, got -1",
    ),
    (
        "product version blank",
        changed(good_manifest(), ("product_version",), ""),
        'product_version: expected a version of letters, digits and . + _ - (at most 64), got ""',
    ),
    (
        "patches not a list",
        changed(good_manifest(), ("patches",), "base"),
        'patches: expected a list of patch IDs, got "base"',
    ),
    (
        "patch ID with a slash",
        changed(good_manifest(), ("patches", 1), "a/b"),
        'patches[1]: expected a patch ID of letters, digits and . _ - (at most 100), got "a/b"',
    ),
    (
        "patch ID twice",
        changed(good_manifest(), ("patches", 1), "base-6.3.1"),
        'patches[1]: "base-6.3.1" is listed twice',
    ),
    (
        "modules a list",
        changed(good_manifest(), ("modules",), []),
        "modules: expected an object of modules, got []",
    ),
    (
        "module name with capitals",
        changed(good_manifest(), ("modules", "IVR-In"), {}),
        'modules["IVR-In"]: expected a name of lowercase letters, digits and _ that starts with a '
        'letter, got "IVR-In"',
    ),
    (
        "module name not a string",
        changed(good_manifest(), ("modules", 7), {}),
        "modules[7]: expected a name of lowercase letters, digits and _ that starts with a "
        "letter, got 7",
    ),
    (
        "file path not a string",
        changed(good_manifest(), (*INBOUND, "files", 7), {"size": 1, "sha256": SHA_A}),
        "modules.ivr_inbound.files[7]: expected a non-empty relative path, got 7",
    ),
    (
        "module not an object",
        changed(good_manifest(), INBOUND, 5),
        "modules.ivr_inbound: expected an object, got 5",
    ),
    (
        "missing manifest_id",
        changed(good_manifest(), (*INBOUND, "manifest_id"), DELETE),
        'modules.ivr_inbound: missing key "manifest_id"',
    ),
    (
        "unknown module key",
        changed(good_manifest(), (*INBOUND, "manifest_ID"), 1),
        'modules.ivr_inbound: unknown key "manifest_ID"',
    ),
    (
        "manifest_id a string",
        changed(good_manifest(), (*INBOUND, "manifest_id"), "abc"),
        'modules.ivr_inbound.manifest_id: expected an integer >= 0, got "abc"',
    ),
    (
        "manifest_id a numeric string",
        changed(good_manifest(), (*INBOUND, "manifest_id"), "1001"),
        'modules.ivr_inbound.manifest_id: expected an integer >= 0, got "1001"',
    ),
    (
        "manifest_id a bool",
        changed(good_manifest(), (*INBOUND, "manifest_id"), True),
        "modules.ivr_inbound.manifest_id: expected an integer >= 0, got true",
    ),
    (
        "manifest_id a float",
        changed(good_manifest(), (*INBOUND, "manifest_id"), 1001.0),
        "modules.ivr_inbound.manifest_id: expected an integer >= 0, got 1001.0",
    ),
    (
        "manifest_id negative",
        changed(good_manifest(), (*INBOUND, "manifest_id"), -1),
        "modules.ivr_inbound.manifest_id: expected an integer >= 0, got -1",
    ),
    (
        "manifest_id null",
        changed(good_manifest(), (*INBOUND, "manifest_id"), None),
        "modules.ivr_inbound.manifest_id: expected an integer >= 0, got null",
    ),
    (
        "version with a newline",
        changed(good_manifest(), (*INBOUND, "version"), "6.3.2.0\n"),
        "modules.ivr_inbound.version: expected a version of letters, digits and . + _ - (at most "
        '64), got "6.3.2.0\\n"',
    ),
    (
        "target climbs out",
        changed(good_manifest(), (*INBOUND, "target"), "../IVR"),
        'modules.ivr_inbound.target: expected a safe relative path, got "../IVR" (it climbs out '
        'with "..")',
    ),
    (
        "target absolute",
        changed(good_manifest(), (*INBOUND, "target"), "/opt/IVR"),
        'modules.ivr_inbound.target: expected a safe relative path, got "/opt/IVR" (it is '
        "absolute)",
    ),
    (
        "target with a drive",
        changed(good_manifest(), (*INBOUND, "target"), "D:\\IVR"),
        'modules.ivr_inbound.target: expected a safe relative path, got "D:\\\\IVR" (it starts '
        "with a drive letter)",
    ),
    (
        "target in the updater's state",
        changed(good_manifest(), (*INBOUND, "target"), ".updater"),
        'modules.ivr_inbound.target: expected a directory outside ".updater", got ".updater"',
    ),
    (
        "target below the state, other case",
        changed(good_manifest(), (*INBOUND, "target"), ".Updater/x"),
        'modules.ivr_inbound.target: expected a directory outside ".updater", got ".Updater/x"',
    ),
    (
        "targets nest",
        changed(good_manifest(), ("modules", "ivr_upiq", "target"), "IVR"),
        'modules.ivr_upiq.target: "IVR" overlaps the target "IVR/Inbound" of module ivr_inbound',
    ),
    (
        "targets equal but for case",
        changed(good_manifest(), ("modules", "ivr_upiq", "target"), "ivr/inbound"),
        'modules.ivr_upiq.target: "ivr/inbound" overlaps the target "IVR/Inbound" of module '
        "ivr_inbound",
    ),
    (
        "services empty",
        changed(good_manifest(), (*INBOUND, "services"), []),
        "modules.ivr_inbound.services: expected a non-empty list of service names, got []",
    ),
    (
        "services a string",
        changed(good_manifest(), (*INBOUND, "services"), "IVR Inbound"),
        'modules.ivr_inbound.services: expected a non-empty list of service names, got "IVR '
        'Inbound"',
    ),
    (
        "unknown service",
        changed(good_manifest(), (*INBOUND, "services"), ["IVR Inbound", "IVR"]),
        'modules.ivr_inbound.services[1]: expected one of "IVR Inbound", "IVR Outbound", '
        '"IVR UpIQ", got "IVR"',
    ),
    (
        "service twice",
        changed(good_manifest(), (*INBOUND, "services"), ["IVR Inbound", "IVR Inbound"]),
        'modules.ivr_inbound.services[1]: "IVR Inbound" is listed twice',
    ),
    (
        "files empty",
        changed(good_manifest(), (*INBOUND, "files"), {}),
        "modules.ivr_inbound.files: expected a non-empty object of files, got {}",
    ),
    (
        "file path climbs out",
        changed(good_manifest(), (*INBOUND, "files", "../boot.ini"), {"size": 1, "sha256": SHA_A}),
        'modules.ivr_inbound.files["../boot.ini"]: expected a safe relative path, got '
        '"../boot.ini" (it climbs out with "..")',
    ),
    (
        "file path absolute",
        changed(good_manifest(), (*INBOUND, "files", "/etc/x"), {"size": 1, "sha256": SHA_A}),
        'modules.ivr_inbound.files["/etc/x"]: expected a safe relative path, got "/etc/x" (it is '
        "absolute)",
    ),
    (
        "file path with NUL",
        changed(good_manifest(), (*INBOUND, "files", "a\x00"), {"size": 1, "sha256": SHA_A}),
        'modules.ivr_inbound.files["a\\u0000"]: expected a safe relative path, got "a\\u0000" '
        "(it contains a NUL or control character)",
    ),
    (
        "file sha256 upper case",
        changed(good_manifest(), (*INBOUND, "files", "version.txt", "sha256"), "A" * 64),
        'modules.ivr_inbound.files["version.txt"].sha256: expected 64 lowercase hex digits, got '
        f'"{"A" * 64}"',
    ),
    (
        "file sha256 short",
        changed(good_manifest(), (*INBOUND, "files", "version.txt", "sha256"), "abc"),
        'modules.ivr_inbound.files["version.txt"].sha256: expected 64 lowercase hex digits, got '
        '"abc"',
    ),
    (
        "file size a string",
        changed(good_manifest(), (*INBOUND, "files", "version.txt", "size"), "8"),
        'modules.ivr_inbound.files["version.txt"].size: expected an integer >= 0, got "8"',
    ),
    (
        "file size missing",
        changed(good_manifest(), (*INBOUND, "files", "version.txt", "size"), DELETE),
        'modules.ivr_inbound.files["version.txt"]: missing key "size"',
    ),
    (
        "file entry has an extra key",
        changed(good_manifest(), (*INBOUND, "files", "version.txt", "mode"), "0644"),
        'modules.ivr_inbound.files["version.txt"]: unknown key "mode"',
    ),
    (
        "files differ only in case",
        changed(good_manifest(), (*INBOUND, "files", "Version.txt"), {"size": 1, "sha256": SHA_A}),
        'modules.ivr_inbound.files: "Version.txt" and "version.txt" differ only in letter case',
    ),
    (
        "a file is also a directory",
        changed(good_manifest(), (*INBOUND, "files", "bin"), {"size": 1, "sha256": SHA_A}),
        'modules.ivr_inbound.files: "bin" is listed as a file and as the directory of '
        '"bin/Module.dll"',
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("doc", "message"),
    [case[1:] for case in BAD_MANIFESTS],
    ids=[case[0] for case in BAD_MANIFESTS],
)
def test_bad_manifest_is_refused_naming_field_and_value(doc, message):
    before = copy.deepcopy(doc)

    with pytest.raises(ManifestError) as raised:
        mf.parse_manifest(doc)

    assert str(raised.value) == message
    assert doc == before


BAD_JSON = [
    ("duplicate key", '{"format": 1, "format": 1}', 'invalid JSON: duplicate key "format"'),
    ("NaN", '{"serial": NaN}', "invalid JSON: NaN is not a number JSON allows"),
    (
        "truncated",
        '{"format": 1,',
        "invalid JSON at line 1 column 14: Expecting property name enclosed in double quotes",
    ),
    ("not UTF-8", b'{"a": "\xff"}', "the document is not UTF-8 (byte 7)"),
    ("not text", 42, "expected JSON text, bytes or a dict, got int"),
    (
        "too large",
        b" " * (mf.MAX_MANIFEST_BYTES + 1),
        f"the document is larger than {mf.MAX_MANIFEST_BYTES} bytes",
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("data", "message"), [case[1:] for case in BAD_JSON], ids=[case[0] for case in BAD_JSON]
)
def test_bad_json_is_refused(data, message):
    with pytest.raises(ManifestError) as raised:
        mf.parse_manifest(data)

    assert str(raised.value) == message


@pytest.mark.bad_input
def test_source_prefixes_the_message_and_is_in_the_context():
    doc = changed(good_manifest(), (*INBOUND, "manifest_id"), "abc")

    with pytest.raises(ManifestError) as raised:
        mf.parse_manifest(doc, source="enterprise manifest /dist/manifest.json")

    assert str(raised.value) == (
        "enterprise manifest /dist/manifest.json: modules.ivr_inbound.manifest_id: expected an "
        'integer >= 0, got "abc"'
    )
    assert raised.value.context == {
        "source": "enterprise manifest /dist/manifest.json",
        "field": "modules.ivr_inbound.manifest_id",
        "value": "abc",
    }


def test_every_error_is_an_updater_error():
    assert issubclass(ManifestError, UpdaterError)
    assert issubclass(DowngradeError, ManifestError)
    assert issubclass(PathError, UpdaterError)


# --- load_manifest -----------------------------------------------------------------------------


def test_load_manifest_from_a_path(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(good_manifest()), encoding="utf-8")

    assert mf.load_manifest(str(path))["serial"] == 2


def test_load_manifest_from_a_url_uses_the_given_fetch():
    asked = []

    def fetch(url):
        asked.append(url)
        return json.dumps(good_manifest()).encode()

    result = mf.load_manifest("http://127.0.0.1:18600/manifest.json", fetch)

    assert (asked, result["serial"]) == (["http://127.0.0.1:18600/manifest.json"], 2)


BAD_SOURCES = [
    (
        "missing file",
        "/nonexistent/manifest.json",
        "cannot read /nonexistent/manifest.json: No such file or directory",
    ),
    (
        "other scheme",
        "ftp://127.0.0.1/manifest.json",
        "cannot read ftp://127.0.0.1/manifest.json: only http:// and https:// URLs or local paths "
        "are supported",
    ),
    ("empty", "", 'expected a path or an http(s) URL, got ""'),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("src", "message"), [case[1:] for case in BAD_SOURCES], ids=[case[0] for case in BAD_SOURCES]
)
def test_bad_source_is_refused(src, message):
    with pytest.raises(ManifestError) as raised:
        mf.load_manifest(src)

    assert str(raised.value) == message


@pytest.mark.bad_input
def test_invalid_manifest_at_a_path_names_the_path(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text('{"format": 1, "format": 1}', encoding="utf-8")

    with pytest.raises(ManifestError) as raised:
        mf.load_manifest(str(path))

    assert str(raised.value) == f'enterprise manifest {path}: invalid JSON: duplicate key "format"'


class FakeResponse:
    def __init__(self, data):
        self.data = data

    def read(self, limit):
        return self.data[:limit]


def opener_raising(error):
    def opener(url, **kwargs):
        raise error

    return opener


FETCH_FAILURES = [
    (
        "HTTP 404",
        opener_raising(urllib.error.HTTPError("u", 404, "Not Found", {}, None)),
        "cannot fetch http://127.0.0.1:1/m.json: HTTP 404 Not Found",
    ),
    (
        "refused",
        opener_raising(urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))),
        "cannot fetch http://127.0.0.1:1/m.json: [Errno 111] Connection refused",
    ),
    (
        "timeout",
        opener_raising(socket.timeout("timed out")),
        "cannot fetch http://127.0.0.1:1/m.json: no answer within 7 seconds",
    ),
    (
        "reset",
        opener_raising(ConnectionResetError(104, "Connection reset by peer")),
        "cannot fetch http://127.0.0.1:1/m.json: [Errno 104] Connection reset by peer",
    ),
    (
        "too large",
        lambda url, **kwargs: FakeResponse(b" " * (mf.MAX_MANIFEST_BYTES + 5)),
        f"cannot fetch http://127.0.0.1:1/m.json: the answer is larger than "
        f"{mf.MAX_MANIFEST_BYTES} bytes",
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("opener", "message"),
    [case[1:] for case in FETCH_FAILURES],
    ids=[case[0] for case in FETCH_FAILURES],
)
def test_fetch_failure_names_the_url_and_the_cause(opener, message):
    fetch = mf.make_fetcher(timeout=7, opener=opener)

    with pytest.raises(ManifestError) as raised:
        fetch("http://127.0.0.1:1/m.json")

    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("url", "use_proxy"),
    [
        ("http://127.0.0.1:18600/manifest.json", False),
        ("http://127.8.9.10/manifest.json", False),
        ("http://localhost:18600/manifest.json", False),
        ("http://[::1]:18600/manifest.json", False),
        ("https://enterprise.example.invalid/manifest.json", True),
    ],
)
def test_fetch_passes_the_options_and_skips_proxies_on_loopback(url, use_proxy):
    seen = {}

    def opener(url, **kwargs):
        seen.update(kwargs)
        return FakeResponse(b"{}")

    mf.make_fetcher(validate_certs=False, timeout=9, opener=opener)(url)

    assert (seen["validate_certs"], seen["timeout"], seen["use_proxy"]) == (False, 9, use_proxy)


@pytest.fixture
def http_manifest(http_dir):
    """good_manifest() served at <URL base>/manifest.json on a loopback port."""
    root, base = http_dir
    (root / "manifest.json").write_text(json.dumps(good_manifest()), encoding="utf-8")
    return base


def test_load_manifest_over_http_with_open_url(http_manifest):
    result = mf.load_manifest(f"{http_manifest}/manifest.json", mf.make_fetcher(timeout=5))

    assert result["modules"]["ivr_inbound"]["manifest_id"] == 1001


@pytest.mark.bad_input
def test_load_manifest_over_http_reports_the_status(http_manifest):
    with pytest.raises(ManifestError) as raised:
        mf.load_manifest(f"{http_manifest}/missing.json", mf.make_fetcher(timeout=5))

    assert (
        str(raised.value) == f"cannot fetch {http_manifest}/missing.json: HTTP 404 File not found"
    )


# --- host record -------------------------------------------------------------------------------


def test_good_record_is_returned_normalized():
    assert mf.parse_record(json.dumps(good_record())) == good_record()


BAD_RECORDS = [
    (
        "format 0",
        changed(good_record(), ("format",), 0),
        "format: expected 1 (the only format this collection reads), got 0",
    ),
    (
        "missing modules",
        changed(good_record(), ("modules",), DELETE),
        'record: missing key "modules"',
    ),
    (
        "ID a string",
        changed(good_record(), (*INBOUND, "manifest_id"), "1000"),
        'modules.ivr_inbound.manifest_id: expected an integer >= 0, got "1000"',
    ),
    (
        "updated not UTC",
        changed(good_record(), (*INBOUND, "updated"), "2026-12-01 10:00"),
        'modules.ivr_inbound.updated: expected a UTC time YYYY-MM-DDTHH:MM:SSZ, got "2026-12-01 '
        '10:00"',
    ),
    (
        "missing version",
        changed(good_record(), (*INBOUND, "version"), DELETE),
        'modules.ivr_inbound: missing key "version"',
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("doc", "message"), [case[1:] for case in BAD_RECORDS], ids=[case[0] for case in BAD_RECORDS]
)
def test_bad_record_is_refused(doc, message):
    before = copy.deepcopy(doc)

    with pytest.raises(ManifestError) as raised:
        mf.parse_record(doc)

    assert str(raised.value) == message
    assert doc == before


def test_missing_record_means_nothing_recorded(tmp_path):
    assert mf.load_record(mf.record_path(str(tmp_path))) is None


def test_record_module_creates_the_record(tmp_path):
    result = mf.record_module(
        str(tmp_path), "ivr_inbound", 1001, "6.3.2.0", now="2026-12-04T15:00:00Z"
    )

    expected = {
        "format": 1,
        "serial": 0,
        "modules": {
            "ivr_inbound": {
                "manifest_id": 1001,
                "version": "6.3.2.0",
                "updated": "2026-12-04T15:00:00Z",
            }
        },
    }
    assert result == (True, expected)
    assert json.loads((tmp_path / ".updater" / "manifest.json").read_text()) == expected


def test_record_module_keeps_the_other_modules(tmp_path):
    mf.write_record(str(tmp_path), good_record())

    changed_, record = mf.record_module(
        str(tmp_path), "ivr_upiq", 3001, "6.3.2.0", serial=2, now="2026-12-04T15:00:00Z"
    )

    expected = good_record()
    expected["serial"] = 2
    expected["modules"]["ivr_upiq"] = {
        "manifest_id": 3001,
        "version": "6.3.2.0",
        "updated": "2026-12-04T15:00:00Z",
    }
    assert (changed_, record) == (True, expected)
    assert mf.load_record(mf.record_path(str(tmp_path))) == expected


def test_record_module_twice_changes_nothing(tmp_path):
    mf.write_record(str(tmp_path), good_record())
    before = (tmp_path / ".updater" / "manifest.json").read_bytes()

    result = mf.record_module(
        str(tmp_path), "ivr_inbound", 1000, "6.3.1.0", now="2030-01-01T00:00:00Z"
    )

    assert result == (False, good_record())
    assert (tmp_path / ".updater" / "manifest.json").read_bytes() == before


def test_record_module_in_check_mode_writes_nothing(tmp_path):
    changed_, record = mf.record_module(str(tmp_path), "ivr_inbound", 1, "6.3.2.0", check_mode=True)

    assert (changed_, record["modules"]["ivr_inbound"]["manifest_id"]) == (True, 1)
    assert not (tmp_path / ".updater").exists()


BAD_RECORD_CALLS = [
    (
        "module name",
        ("IVR Inbound", 1, "6.3.2.0"),
        "module: expected a name of lowercase letters, digits and _ that starts with a letter, got "
        '"IVR Inbound"',
    ),
    ("ID", ("ivr_inbound", "1", "6.3.2.0"), 'manifest_id: expected an integer >= 0, got "1"'),
    (
        "version",
        ("ivr_inbound", 1, ""),
        'version: expected a version of letters, digits and . + _ - (at most 64), got ""',
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("args", "message"),
    [case[1:] for case in BAD_RECORD_CALLS],
    ids=[case[0] for case in BAD_RECORD_CALLS],
)
def test_record_module_refuses_bad_values(tmp_path, args, message):
    with pytest.raises(ManifestError) as raised:
        mf.record_module(str(tmp_path), *args)

    assert str(raised.value) == message


@pytest.mark.bad_input
def test_record_module_refuses_a_damaged_record(tmp_path):
    (tmp_path / ".updater").mkdir()
    (tmp_path / ".updater" / "manifest.json").write_text("{", encoding="utf-8")

    with pytest.raises(ManifestError) as raised:
        mf.record_module(str(tmp_path), "ivr_inbound", 1, "6.3.2.0")

    assert str(raised.value) == (
        f"host record {tmp_path}/.updater/manifest.json: invalid JSON at line 1 column 2: "
        "Expecting property name enclosed in double quotes"
    )


# --- compare -----------------------------------------------------------------------------------


def update(module, old_id, new_id, old_version="6.3.1.0"):
    entry = good_manifest()["modules"][module]
    return {
        "module": module,
        "old_id": old_id,
        "new_id": new_id,
        "old_version": old_version,
        "new_version": entry["version"],
        "target": entry["target"],
        "services": entry["services"],
        "files": mf.parse_manifest(good_manifest())["modules"][module]["files"],
    }


COMPARISONS = [
    (
        "two modules newer",
        good_record(),
        {},
        [update("ivr_inbound", 1000, 1001), update("ivr_upiq", 3000, 3001)],
    ),
    (
        "no record",
        None,
        {},
        [
            update("ivr_inbound", None, 1001, None),
            update("ivr_outbound", None, 2000, None),
            update("ivr_upiq", None, 3001, None),
        ],
    ),
    (
        "up to date",
        changed(
            changed(good_record(), (*INBOUND, "manifest_id"), 1001),
            ("modules", "ivr_upiq", "manifest_id"),
            3001,
        ),
        {},
        [],
    ),
    (
        "limited to one module",
        good_record(),
        {"modules": ["ivr_upiq"]},
        [update("ivr_upiq", 3000, 3001)],
    ),
    (
        "a module missing from the record",
        changed(good_record(), INBOUND, DELETE),
        {},
        [update("ivr_inbound", None, 1001, None), update("ivr_upiq", 3000, 3001)],
    ),
    (
        "downgrade allowed",
        changed(good_record(), (*INBOUND, "manifest_id"), 1005),
        {"allow_downgrade": True},
        [update("ivr_inbound", 1005, 1001), update("ivr_upiq", 3000, 3001)],
    ),
    (
        "a recorded module the enterprise dropped",
        changed(
            good_record(),
            ("modules", "ivr_old"),
            {"manifest_id": 9, "version": "1.0", "updated": "2026-01-01T00:00:00Z"},
        ),
        {},
        [update("ivr_inbound", 1000, 1001), update("ivr_upiq", 3000, 3001)],
    ),
]


@pytest.mark.parametrize(
    ("record", "options", "expected"),
    [case[1:] for case in COMPARISONS],
    ids=[case[0] for case in COMPARISONS],
)
def test_compare(record, options, expected):
    enterprise = mf.parse_manifest(good_manifest())

    assert mf.compare(enterprise, record, **options) == expected


@pytest.mark.bad_input
def test_compare_refuses_a_downgrade():
    record = changed(good_record(), (*INBOUND, "manifest_id"), 1005)

    with pytest.raises(DowngradeError) as raised:
        mf.compare(mf.parse_manifest(good_manifest()), record)

    assert str(raised.value) == (
        "module ivr_inbound: the enterprise offers manifest ID 1001, lower than the 1005 the host "
        "has recorded; refusing the downgrade (set allow_downgrade to install it)"
    )


@pytest.mark.bad_input
def test_compare_refuses_an_unknown_module_name():
    with pytest.raises(ManifestError) as raised:
        mf.compare(mf.parse_manifest(good_manifest()), None, modules=["ivr_inbound", "ivr_fax"])

    assert str(raised.value) == (
        'modules: "ivr_fax" is not a module of the enterprise manifest (it has ivr_inbound, '
        "ivr_outbound, ivr_upiq)"
    )


@pytest.mark.parametrize(
    ("modules", "services"),
    [
        (["ivr_upiq", "ivr_inbound"], ["IVR Inbound", "IVR UpIQ"]),
        ([], []),
    ],
)
def test_services_of_lists_each_service_once_in_product_order(modules, services):
    enterprise = mf.parse_manifest(good_manifest())
    enterprise["modules"]["ivr_upiq"]["services"] = ["IVR UpIQ", "IVR Inbound"]
    updates = [u for u in mf.compare(enterprise, None) if u["module"] in modules]

    assert mf.services_of(updates) == services


# --- replays: the serial rule ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recorded", "offered", "options"),
    [(2, 2, {}), (1, 2, {}), (0, 2, {}), (3, 2, {"allow_downgrade": True})],
    ids=["same serial", "newer serial", "nothing recorded", "older allowed"],
)
def test_a_serial_at_or_above_the_recorded_one_is_compared(recorded, offered, options):
    record = changed(good_record(), ("serial",), recorded)
    enterprise = mf.parse_manifest(changed(good_manifest(), ("serial",), offered))

    updates = mf.compare(enterprise, record, **options)

    assert [update["module"] for update in updates] == ["ivr_inbound", "ivr_upiq"]


@pytest.mark.bad_input
def test_compare_refuses_a_replayed_older_manifest():
    record = changed(good_record(), ("serial",), 3)
    enterprise = mf.parse_manifest(good_manifest())

    with pytest.raises(ReplayError) as raised:
        mf.compare(enterprise, record)

    assert str(raised.value) == (
        "the enterprise manifest has serial 2, lower than the serial 3 this host last installed "
        "from; refusing an older manifest, which is a replay or a rolled-back enterprise (set "
        "allow_downgrade to accept it)"
    )
    assert raised.value.context == {"serial": 2, "recorded_serial": 3}
    assert isinstance(raised.value, DowngradeError)


@pytest.mark.parametrize(
    ("serial", "expected"), [(None, 1), (2, 2), (5, 5)], ids=["kept", "raised", "set"]
)
def test_record_module_sets_the_serial_it_is_given(tmp_path, serial, expected):
    mf.write_record(str(tmp_path), good_record())

    _changed, record = mf.record_module(
        str(tmp_path), "ivr_inbound", 1001, "6.3.2.0", serial=serial, now="2026-12-04T15:00:00Z"
    )

    assert record["serial"] == expected
    assert mf.load_record(mf.record_path(str(tmp_path)))["serial"] == expected


def test_a_repeated_commit_with_a_new_serial_records_only_the_serial(tmp_path):
    mf.write_record(str(tmp_path), good_record())

    changed_, record = mf.record_module(
        str(tmp_path), "ivr_inbound", 1000, "6.3.1.0", serial=4, now="2030-01-01T00:00:00Z"
    )

    assert (changed_, record["serial"]) == (True, 4)
    assert record["modules"]["ivr_inbound"]["updated"] == "2026-12-01T10:00:00Z"


# --- signed manifests --------------------------------------------------------------------------

KEY = signing.SigningKey(b"\x11" * 32)
TRUSTED = signing.VerifyKey(KEY.public)


def manifest_bytes(serial=2):
    return fileio.dump_json(mf.parse_manifest(changed(good_manifest(), ("serial",), serial)))


def signature_bytes(key, *manifests):
    return json.dumps(signing.make_signature_file(key, list(manifests))).encode()


def served(files):
    """A fetch that answers from {url: [bytes, ...]}, one answer per call, the last repeating."""
    asked = []

    def fetch(url):
        asked.append(url)
        answers = files[url]
        return answers.pop(0) if len(answers) > 1 else answers[0]

    return fetch, asked


URL = "http://127.0.0.1:1/manifest.json"
STRANGER = signing.SigningKey(b"\x12" * 32)


def test_a_signed_manifest_is_read_from_a_path(tmp_path):
    data = manifest_bytes().encode()
    (tmp_path / "manifest.json").write_bytes(data)
    (tmp_path / "manifest.json.sig").write_bytes(signature_bytes(KEY, data))

    result = mf.load_manifest(str(tmp_path / "manifest.json"), key=TRUSTED)

    assert result == mf.parse_manifest(good_manifest())


def test_a_manifest_read_just_before_a_patch_still_verifies():
    old, new = manifest_bytes(2).encode(), manifest_bytes(3).encode()
    fetch, asked = served({URL: [old], URL + ".sig": [signature_bytes(KEY, new, old)]})

    assert mf.load_manifest(URL, fetch, TRUSTED)["serial"] == 2
    assert asked == [URL, URL + ".sig"]


def test_a_reader_two_patches_behind_reads_both_again():
    first, second, third = (manifest_bytes(n).encode() for n in (2, 3, 4))
    fetch, asked = served(
        {
            URL: [first, third],
            URL + ".sig": [
                signature_bytes(KEY, third, second),
                signature_bytes(KEY, third, second),
            ],
        }
    )

    assert mf.load_manifest(URL, fetch, TRUSTED)["serial"] == 4
    assert asked == [URL, URL + ".sig", URL, URL + ".sig"]


def test_signature_src_is_the_source_plus_sig():
    assert mf.signature_src("/dist/manifest.json") == "/dist/manifest.json.sig"
    assert mf.signature_src(URL) == URL + ".sig"


SIGNED_FAILURES = [
    (
        "unsigned",
        {URL: [manifest_bytes().encode()]},
        f"enterprise manifest {URL}: it has no readable signature, and a host that trusts a key "
        f"refuses an unsigned manifest: cannot fetch {URL}.sig: HTTP 404 Not Found",
    ),
    (
        "signed by another key",
        {
            URL: [manifest_bytes().encode()],
            URL + ".sig": [signature_bytes(STRANGER, manifest_bytes().encode())],
        },
        f"enterprise manifest {URL}: it is signed by key "
        f"{STRANGER.key_id}, not by the trusted key {KEY.key_id}",
    ),
    (
        "altered after signing",
        {
            URL: [manifest_bytes().encode().replace(b"6.3.2.0", b"6.3.9.0")],
            URL + ".sig": [signature_bytes(KEY, manifest_bytes().encode())],
        },
        f"enterprise manifest {URL}: signature file {URL}.sig holds no signature of this "
        f"manifest (sha256 "
        f"{hashlib.sha256(manifest_bytes().encode().replace(b'6.3.2.0', b'6.3.9.0')).hexdigest()}"
        f"): the manifest was altered after it was signed",
    ),
    (
        "damaged signature file",
        {URL: [manifest_bytes().encode()], URL + ".sig": [b"{"]},
        f"enterprise manifest {URL}: signature file {URL}.sig: invalid JSON at line 1 column 2: "
        "Expecting property name enclosed in double quotes",
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("files", "message"),
    [case[1:] for case in SIGNED_FAILURES],
    ids=[case[0] for case in SIGNED_FAILURES],
)
def test_a_manifest_without_the_trusted_signature_is_refused(files, message):
    def fetch(url):
        if url not in files:
            raise ManifestError(f"cannot fetch {url}: HTTP 404 Not Found", url=url)
        return files[url][0]

    with pytest.raises(SignatureError) as raised:
        mf.load_manifest(URL, fetch, TRUSTED)

    assert str(raised.value) == message
    assert raised.value.context["source"] == f"enterprise manifest {URL}"
