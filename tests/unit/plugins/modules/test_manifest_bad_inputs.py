# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad manifests, signatures, patches and options, each through a module's main().

Every case runs against a whole site on disk: a signed enterprise distribution (base and sample
patch applied) and an IVR host's install root with its record. A case asserts the module's
exact message and that not one byte, mode or directory of the site changed.
"""

import base64
import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from ansible_collections.prairiefyre.updater.plugins.module_utils import signing
from ansible_collections.prairiefyre.updater.plugins.module_utils.fileio import dump_json
from ansible_collections.prairiefyre.updater.plugins.modules import (
    enterprise_patch,
    manifest_compare,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

REPO = Path(__file__).resolve().parents[4]
SHIPPED = REPO / "lab" / "patches"
KEY = signing.SigningKey(b"\x31" * 32)
STRANGER = signing.SigningKey(b"\x32" * 32)
RSA = rsa.generate_private_key(public_exponent=65537, key_size=1024)


class Site:
    """The files of one case: site/dist, site/install, site/keys and site/input."""

    def __init__(self, root):
        self.root = root
        self.dist = root / "dist"
        self.install = root / "install"
        self.keys = root / "keys"
        self.input = root / "input"

    @property
    def manifest_path(self):
        return self.dist / "manifest.json"

    @property
    def record_path(self):
        return self.install / ".updater" / "manifest.json"

    def manifest(self):
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def write(self, name, data):
        """An input file of the case under site/input; returns its path as a string."""
        path = self.input / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        return str(path)

    def signed_pair(self, name, data, key=KEY, signature=None):
        """Write manifest bytes and a signature file by key (or the given file) as input."""
        sig = signature or json.dumps(signing.make_signature_file(key, [data])).encode()
        self.write(name + ".sig", sig)
        return self.write(name, data)

    def bundle(self, name="second", base="second-6.3.3"):
        """A copy of a shipped bundle under site/input, to be damaged by the case."""
        path = self.input / name
        shutil.copytree(SHIPPED / base, path)
        return path


def snapshot(root):
    """Every directory and file under root with its mode and bytes: what a run must not touch."""
    found = {}
    for current, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(current, name)
            stat = os.lstat(path)
            data = None if name in dirs else Path(path).read_bytes()
            found[os.path.relpath(path, root)] = (stat.st_mode, data)
    return found


@pytest.fixture
def site(tmp_path, run_module):
    site = Site(tmp_path / "site")
    site.keys.mkdir(parents=True)
    (site.keys / "enterprise.key").write_bytes(
        ed25519.Ed25519PrivateKey.from_private_bytes(b"\x31" * 32).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(site.keys / "enterprise.key", 0o600)
    for name in ("base-6.3.1", "sample-6.3.2"):
        args = {
            "dist_dir": str(site.dist),
            "patch": str(SHIPPED / name),
            "signing_key": str(site.keys / "enterprise.key"),
        }
        assert run_module(enterprise_patch, args)["failed"] is False

    record = {
        "format": 1,
        "serial": 2,
        "modules": {
            name: {"manifest_id": mid, "version": "6.3.1.0", "updated": "2026-12-01T10:00:00Z"}
            for name, mid in (("ivr_inbound", 1000), ("ivr_outbound", 2000), ("ivr_upiq", 3000))
        },
    }
    site.record_path.parent.mkdir(parents=True)
    site.record_path.write_text(dump_json(record), encoding="utf-8")
    for target in ("IVR/Inbound", "IVR/Outbound", "IVR/UpIQ"):
        (site.install / target).mkdir(parents=True)
        (site.install / target / "version.txt").write_text("6.3.1.0\n")
    site.input.mkdir()
    return site


def run_case(run_module, site, module, setup, message):
    """Set the case up, run the module, check its message and that the site is unchanged."""
    args = setup(site)
    expected = message.format(
        dist=site.dist,
        install=site.install,
        input=site.input,
        keys=site.keys,
        key=KEY.key_id,
        stranger=STRANGER.key_id,
    )
    before = snapshot(site.root)

    result = run_module(module, args)

    assert (result["failed"], result["msg"]) == (True, expected)
    assert snapshot(site.root) == before


# --- manifests, read by manifest_compare --------------------------------------------------------


def with_manifest(change=None, text=None, signed=False):
    """setup(): an enterprise manifest derived from the site's, compared with the host record."""

    def setup(site):
        if text is not None:
            data = text if isinstance(text, bytes) else text.encode("utf-8")
        else:
            doc = site.manifest()
            change(doc)
            data = json.dumps(doc, indent=2).encode()
        args = {"enterprise_src": site.write("manifest.json", data)}
        if signed:
            site.signed_pair("manifest.json", data)
            args["public_key"] = signing.public_key_pem(KEY.public)
        args["local_manifest"] = str(site.record_path)
        return args

    return setup


def module_key(name, key, value):
    return lambda doc: doc["modules"][name].__setitem__(key, value)


def top_key(key, value):
    return lambda doc: doc.__setitem__(key, value)


def drop(*path):
    def change(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return change


def add_file(name, path):
    return lambda doc: doc["modules"][name]["files"].__setitem__(
        path, {"size": 1, "sha256": "a" * 64}
    )


SRC = "enterprise manifest {input}/manifest.json: "
MANIFESTS = [
    (
        "truncated JSON",
        with_manifest(text='{"format": 1, "serial": 2, "product_version": "6.3.2.0", "patches": ['),
        SRC + "invalid JSON at line 1 column 70: Expecting value",
    ),
    (
        "YAML instead of JSON",
        with_manifest(text="format: 1\nserial: 2\nmodules: {}\n"),
        SRC + "invalid JSON at line 1 column 1: Expecting value",
    ),
    (
        "empty file",
        with_manifest(text=""),
        SRC + "invalid JSON at line 1 column 1: Expecting value",
    ),
    (
        "not UTF-8",
        with_manifest(text=b'{"product_version": "6.3.2.0 \xe9"}'),
        SRC + "the document is not UTF-8 (byte 29)",
    ),
    (
        "duplicate module",
        with_manifest(text='{"format": 1, "modules": {"ivr_inbound": {}, "ivr_inbound": {}}}'),
        SRC + 'invalid JSON: duplicate key "ivr_inbound"',
    ),
    (
        "NaN serial",
        with_manifest(text='{"format": 1, "serial": NaN}'),
        SRC + "invalid JSON: NaN is not a number JSON allows",
    ),
    (
        "format 2",
        with_manifest(top_key("format", 2)),
        SRC + "format: expected 1 (the only format this collection reads), got 2",
    ),
    ("missing serial", with_manifest(drop("serial")), SRC + 'manifest: missing key "serial"'),
    (
        "unknown top key",
        with_manifest(top_key("signature", "abc")),
        SRC + 'manifest: unknown key "signature"',
    ),
    (
        "serial a string",
        with_manifest(top_key("serial", "2")),
        SRC + 'serial: expected an integer >= 0, got "2"',
    ),
    (
        "missing module files",
        with_manifest(drop("modules", "ivr_upiq", "files")),
        SRC + 'modules.ivr_upiq: missing key "files"',
    ),
    (
        "negative ID",
        with_manifest(module_key("ivr_inbound", "manifest_id", -1)),
        SRC + "modules.ivr_inbound.manifest_id: expected an integer >= 0, got -1",
    ),
    (
        "non-numeric ID",
        with_manifest(module_key("ivr_inbound", "manifest_id", "abc")),
        SRC + 'modules.ivr_inbound.manifest_id: expected an integer >= 0, got "abc"',
    ),
    (
        "fractional ID",
        with_manifest(module_key("ivr_inbound", "manifest_id", 1001.5)),
        SRC + "modules.ivr_inbound.manifest_id: expected an integer >= 0, got 1001.5",
    ),
    (
        "unknown service",
        with_manifest(module_key("ivr_upiq", "services", ["IVR Fax"])),
        SRC + 'modules.ivr_upiq.services[0]: expected one of "IVR Inbound", "IVR Outbound", '
        '"IVR UpIQ", got "IVR Fax"',
    ),
    (
        "service twice",
        with_manifest(module_key("ivr_upiq", "services", ["IVR UpIQ", "IVR UpIQ"])),
        SRC + 'modules.ivr_upiq.services[1]: "IVR UpIQ" is listed twice',
    ),
    (
        "file path escapes",
        with_manifest(add_file("ivr_upiq", "../../etc/passwd")),
        SRC + 'modules.ivr_upiq.files["../../etc/passwd"]: expected a safe relative path, got '
        '"../../etc/passwd" (it climbs out with "..")',
    ),
    (
        "absolute target",
        with_manifest(module_key("ivr_upiq", "target", "/opt/IVR")),
        SRC + 'modules.ivr_upiq.target: expected a safe relative path, got "/opt/IVR" (it is '
        "absolute)",
    ),
    (
        "target in the updater's state",
        with_manifest(module_key("ivr_upiq", "target", ".updater/IVR")),
        SRC + 'modules.ivr_upiq.target: expected a directory outside ".updater", got '
        '".updater/IVR"',
    ),
    (
        "nested targets",
        with_manifest(module_key("ivr_upiq", "target", "IVR/Inbound/UpIQ")),
        SRC + 'modules.ivr_upiq.target: "IVR/Inbound/UpIQ" overlaps the target "IVR/Inbound" of '
        "module ivr_inbound",
    ),
    (
        "sha256 not hex",
        with_manifest(
            lambda doc: doc["modules"]["ivr_upiq"]["files"]["version.txt"].update(sha256="z" * 64)
        ),
        SRC + 'modules.ivr_upiq.files["version.txt"].sha256: expected 64 lowercase hex digits, got '
        f'"{"z" * 64}"',
    ),
    (
        "negative size",
        with_manifest(
            lambda doc: doc["modules"]["ivr_upiq"]["files"]["version.txt"].update(size=-8)
        ),
        SRC + 'modules.ivr_upiq.files["version.txt"].size: expected an integer >= 0, got -8',
    ),
    (
        "module name with capitals",
        with_manifest(lambda doc: doc["modules"].__setitem__("IVR_Fax", {})),
        SRC + 'modules["IVR_Fax"]: expected a name of lowercase letters, digits and _ that starts '
        'with a letter, got "IVR_Fax"',
    ),
    (
        "no files",
        with_manifest(module_key("ivr_upiq", "files", {})),
        SRC + "modules.ivr_upiq.files: expected a non-empty object of files, got {{}}",
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("setup", "message"), [case[1:] for case in MANIFESTS], ids=[case[0] for case in MANIFESTS]
)
def test_a_bad_manifest_is_refused_and_nothing_changes(run_module, site, setup, message):
    run_case(run_module, site, manifest_compare, setup, message)


# --- the host's record and the comparison --------------------------------------------------------


def with_record(change, **options):
    """setup(): the site's manifest, compared with a changed copy of the host record."""

    def setup(site):
        record = json.loads(site.record_path.read_text(encoding="utf-8"))
        change(record)
        args = {
            "enterprise_src": str(site.manifest_path),
            "local_manifest": site.write("record.json", json.dumps(record)),
        }
        return dict(args, **options)

    return setup


def older_manifest(site):
    """The serial-1 manifest the enterprise signed before the sample patch: a valid replay."""
    doc = site.manifest()
    doc.update(serial=1, product_version="6.3.1.0", patches=["base-6.3.1"])
    for name, mid in (("ivr_inbound", 1000), ("ivr_upiq", 3000)):
        base = json.loads((SHIPPED / "base-6.3.1" / "patch.json").read_text())["modules"][name]
        doc["modules"][name].update(manifest_id=mid, version="6.3.1.0", files=base["files"])
    return dump_json(doc).encode()


def replay(site):
    args = {
        "enterprise_src": site.signed_pair("manifest.json", older_manifest(site)),
        "public_key": signing.public_key_pem(KEY.public),
        "local_manifest": str(site.record_path),
    }
    return args


REC = "host record {input}/record.json: "
HOST_RULES = [
    (
        "module downgrade",
        with_record(lambda r: r["modules"]["ivr_inbound"].update(manifest_id=1005)),
        "module ivr_inbound: the enterprise offers manifest ID 1001, lower than the 1005 the host "
        "has recorded; refusing the downgrade (set allow_downgrade to install it)",
    ),
    (
        "older serial",
        with_record(lambda r: r.update(serial=5)),
        "the enterprise manifest has serial 2, lower than the serial 5 this host last installed "
        "from; refusing an older manifest, which is a replay or a rolled-back enterprise (set "
        "allow_downgrade to accept it)",
    ),
    (
        "replayed old manifest, validly signed",
        replay,
        "the enterprise manifest has serial 1, lower than the serial 2 this host last installed "
        "from; refusing an older manifest, which is a replay or a rolled-back enterprise (set "
        "allow_downgrade to accept it)",
    ),
    (
        "unknown module asked for",
        with_record(lambda r: None, modules=["ivr_fax"]),
        'modules: "ivr_fax" is not a module of the enterprise manifest (it has ivr_inbound, '
        "ivr_outbound, ivr_upiq)",
    ),
    (
        "record with a negative serial",
        with_record(lambda r: r.update(serial=-1)),
        REC + "serial: expected an integer >= 0, got -1",
    ),
    (
        "record ID as text",
        with_record(lambda r: r["modules"]["ivr_upiq"].update(manifest_id="3000")),
        REC + 'modules.ivr_upiq.manifest_id: expected an integer >= 0, got "3000"',
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("setup", "message"), [case[1:] for case in HOST_RULES], ids=[case[0] for case in HOST_RULES]
)
def test_a_host_rule_refuses_and_nothing_changes(run_module, site, setup, message):
    run_case(run_module, site, manifest_compare, setup, message)


@pytest.mark.bad_input
def test_a_damaged_record_is_refused_and_nothing_changes(run_module, site):
    def setup(site):
        site.record_path.write_text('{"format": 1, "serial": 2, "modules": {', encoding="utf-8")
        return {"enterprise_src": str(site.manifest_path), "local_manifest": str(site.record_path)}

    run_case(
        run_module,
        site,
        manifest_compare,
        setup,
        "host record {install}/.updater/manifest.json: invalid JSON at line 1 column 40: "
        "Expecting property name enclosed in double quotes",
    )


# --- signatures -------------------------------------------------------------------------------


def signed_src(data_change=None, signature_change=None, key=KEY, sign=True, public_key=None):
    """setup(): the site's manifest bytes, altered or signed otherwise, with KEY trusted."""

    def setup(site):
        data = site.manifest_path.read_bytes()
        sig = json.dumps(signing.make_signature_file(key, [data])).encode()
        if signature_change:
            sig = signature_change(sig)
        if data_change:
            data = data_change(data)
        src = site.write("manifest.json", data)
        if sign:
            site.write("manifest.json.sig", sig)
        return {
            "enterprise_src": src,
            "public_key": public_key or signing.public_key_pem(KEY.public),
        }

    return setup


def flip_signature(sig):
    doc = json.loads(sig)
    raw = bytearray(base64.b64decode(doc["signatures"][0]["signature"]))
    raw[10] ^= 0x04
    doc["signatures"][0]["signature"] = base64.b64encode(bytes(raw)).decode()
    return json.dumps(doc).encode()


def rsa_public():
    return (
        RSA.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def tampered(data):
    return data.replace(b'"6.3.2.0"', b'"6.3.9.0"', 1)


def tampered_sha(site):
    return hashlib.sha256(tampered(site.manifest_path.read_bytes())).hexdigest()


SIGNATURES = [
    (
        "unsigned",
        signed_src(sign=False),
        SRC + "it has no readable signature, and a host that trusts a key refuses an unsigned "
        "manifest: cannot read {input}/manifest.json.sig: No such file or directory",
    ),
    (
        "signed by another key",
        signed_src(key=STRANGER),
        SRC + "it is signed by key {stranger}, not by the trusted key {key}",
    ),
    (
        "tampered manifest",
        signed_src(data_change=tampered),
        SRC + "signature file {input}/manifest.json.sig holds no signature of this manifest "
        "(sha256 {sha}): the manifest was altered after it was signed",
    ),
    (
        "tampered signature",
        signed_src(signature_change=flip_signature),
        SRC + "the signature by key {key} does not verify: the manifest or its signature was "
        "altered",
    ),
    (
        "truncated signature file",
        signed_src(signature_change=lambda sig: sig[:40]),
        SRC + "signature file {input}/manifest.json.sig: invalid JSON at line 1 column 39: "
        "Unterminated string starting at",
    ),
    (
        "signature file of another algorithm",
        signed_src(signature_change=lambda sig: sig.replace(b'"ed25519"', b'"rsa-pss"')),
        SRC + 'signature file {input}/manifest.json.sig: algorithm: expected "ed25519", got '
        '"rsa-pss"',
    ),
    (
        "the private key as public_key",
        signed_src(public_key="-----BEGIN PRIVATE KEY-----\nMC4=\n-----END PRIVATE KEY-----\n"),
        'public_key: expected a PEM "PUBLIC KEY" block, found "PRIVATE KEY"; give hosts the '
        "public key, never the private one",
    ),
    (
        "an RSA public_key",
        signed_src(public_key=rsa_public()),
        "public_key: expected an Ed25519 key, found an RSA key",
    ),
    (
        "public_key that is no PEM",
        signed_src(public_key="/etc/prairiefyre/enterprise.pub"),
        'public_key: expected a PEM "PUBLIC KEY" block, found none',
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("setup", "message"), [case[1:] for case in SIGNATURES], ids=[case[0] for case in SIGNATURES]
)
def test_a_manifest_without_the_trusted_signature_is_refused(run_module, site, setup, message):
    message = message.replace("{sha}", tampered_sha(site))

    run_case(run_module, site, manifest_compare, setup, message)


# --- options of manifest_compare ---------------------------------------------------------------


def options(**args):
    def setup(site):
        values = {
            key: value.format(dist=site.dist) if isinstance(value, str) else value
            for key, value in args.items()
        }
        if values.pop("manifest_dict", False):
            values["enterprise_manifest"] = site.manifest()
        return values

    return setup


OPTIONS = [
    (
        "no source",
        options(),
        "one of the following is required: enterprise_src, enterprise_manifest",
    ),
    (
        "two sources",
        options(enterprise_src="{dist}/manifest.json", manifest_dict=True),
        "parameters are mutually exclusive: enterprise_src|enterprise_manifest",
    ),
    (
        "a key but no source to verify",
        options(manifest_dict=True, public_key=signing.public_key_pem(KEY.public)),
        "missing parameter(s) required by 'public_key': enterprise_src",
    ),
    (
        "zero timeout",
        options(enterprise_src="http://127.0.0.1:9/manifest.json", timeout=0),
        "timeout: expected a number of seconds > 0, got 0",
    ),
    (
        "an FTP source",
        options(enterprise_src="ftp://127.0.0.1/manifest.json"),
        "cannot read ftp://127.0.0.1/manifest.json: only http:// and https:// URLs or local paths "
        "are supported",
    ),
    (
        "timeout not a number",
        options(enterprise_src="{dist}/manifest.json", timeout="soon"),
        "argument 'timeout' is of type str and we were unable to convert to int: \"'soon'\" "
        "cannot be converted to an int",
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("setup", "message"), [case[1:] for case in OPTIONS], ids=[case[0] for case in OPTIONS]
)
def test_bad_options_are_refused_and_nothing_changes(run_module, site, setup, message):
    run_case(run_module, site, manifest_compare, setup, message)


# --- patches, applied by enterprise_patch --------------------------------------------------------


def patched(change=None, signing_key="enterprise.key", patch=None):
    """setup(): the shipped second patch, changed by change(bundle dir), for the signed dist."""

    def setup(site):
        bundle = site.bundle()
        if change:
            change(bundle)
        args = {"dist_dir": str(site.dist), "patch": str(bundle)}
        if patch:
            args["patch"] = patch.format(input=site.input)
        if signing_key:
            args["signing_key"] = str(site.keys / signing_key)
        return args

    return setup


def patch_json(change):
    def edit(bundle):
        doc = json.loads((bundle / "patch.json").read_text())
        change(doc)
        (bundle / "patch.json").write_text(json.dumps(doc, indent=2))

    return edit


def patch_text(text):
    return lambda bundle: (bundle / "patch.json").write_text(text)


def write_file(path, data):
    return lambda bundle: (bundle / path).write_bytes(data)


def patch_module(key, value, name="ivr_outbound"):
    return patch_json(lambda doc: doc["modules"][name].__setitem__(key, value))


def tar_bundle(members):
    """Write input/bad.tar.gz from [(name, bytes or ("symlink", target))]."""

    def edit(bundle):
        with tarfile.open(bundle.parent / "bad.tar.gz", "w:gz") as tar:
            for name, content in members:
                info = tarfile.TarInfo(name)
                if isinstance(content, tuple):
                    info.type, info.linkname = tarfile.SYMTYPE, content[1]
                    tar.addfile(info)
                else:
                    info.size = len(content)
                    tar.addfile(info, fileobj=io.BytesIO(content))

    return edit


def truncated_tar(bundle):
    shutil.make_archive(str(bundle.parent / "full"), "gztar", bundle, ".")
    data = (bundle.parent / "full.tar.gz").read_bytes()
    (bundle.parent / "cut.tar.gz").write_bytes(data[: len(data) // 2])


def add_key(name, data):
    def edit(bundle):
        (bundle.parent.parent / "keys" / name).write_text(data)

    return edit


def public_key_file(bundle):
    (bundle.parent.parent / "keys" / "enterprise.pub").write_text(
        signing.public_key_pem(KEY.public)
    )


def rsa_key_file(bundle):
    (bundle.parent.parent / "keys" / "rsa.key").write_bytes(
        RSA.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def in_dist(change):
    """Damage the enterprise distribution itself before the patch."""

    def edit(bundle):
        change(bundle.parent.parent / "dist")

    return edit


def tamper_dist_manifest(dist):
    path = dist / "manifest.json"
    path.write_bytes(tampered(path.read_bytes()))


VERSION_SHA = "ff2ac01807b3ec9d95f41401a331e28a396e1ba053e4fcbccab6aa74886db093"
BUNDLE = "bundle {input}/second"
BUNDLE_JSON = BUNDLE + ": patch.json: "
PATCHES = [
    (
        "truncated patch.json",
        patched(patch_text('{"format": 1, "patch_id": "second-6.3.3", "modules": {')),
        BUNDLE_JSON
        + "invalid JSON at line 1 column 55: Expecting property name enclosed in double "
        "quotes",
    ),
    (
        "YAML patch.json",
        patched(patch_text("format: 1\npatch_id: second-6.3.3\n")),
        BUNDLE_JSON + "invalid JSON at line 1 column 1: Expecting value",
    ),
    (
        "missing patch_id",
        patched(patch_json(lambda doc: doc.pop("patch_id"))),
        BUNDLE_JSON + 'patch: missing key "patch_id"',
    ),
    (
        "duplicate module",
        patched(patch_text('{"format": 1, "modules": {"ivr_inbound": {}, "ivr_inbound": {}}}')),
        BUNDLE_JSON + 'invalid JSON: duplicate key "ivr_inbound"',
    ),
    (
        "negative ID",
        patched(patch_module("manifest_id", -2001)),
        BUNDLE_JSON + "modules.ivr_outbound.manifest_id: expected an integer >= 0, got -2001",
    ),
    (
        "ID as text",
        patched(patch_module("manifest_id", "2001")),
        BUNDLE_JSON + 'modules.ivr_outbound.manifest_id: expected an integer >= 0, got "2001"',
    ),
    (
        "unknown service",
        patched(patch_module("services", ["IVR Fax"])),
        BUNDLE_JSON + 'modules.ivr_outbound.services[0]: expected one of "IVR Inbound", "IVR '
        'Outbound", "IVR UpIQ", got "IVR Fax"',
    ),
    (
        "file path escapes",
        patched(patch_module("files", {"../../boot.ini": {"size": 1, "sha256": "a" * 64}})),
        BUNDLE_JSON + 'modules.ivr_outbound.files["../../boot.ini"]: expected a safe relative '
        'path, got "../../boot.ini" (it climbs out with "..")',
    ),
    (
        "checksum mismatch",
        patched(write_file("files/ivr_inbound/version.txt", b"6.3.3.1\n")),
        BUNDLE + ": files/ivr_inbound/version.txt: sha256 is "
        f"{hashlib.sha256(b'6.3.3.1' + bytes([10])).hexdigest()}, patch.json says {VERSION_SHA}",
    ),
    (
        "truncated file",
        patched(write_file("files/ivr_inbound/version.txt", b"6.3.")),
        BUNDLE + ": files/ivr_inbound/version.txt: size is 4 bytes, patch.json says 8",
    ),
    (
        "listed file missing",
        patched(lambda bundle: (bundle / "files/ivr_outbound/Outbound.dll").unlink()),
        BUNDLE + ": files/ivr_outbound/Outbound.dll is listed in patch.json but missing",
    ),
    (
        "file not listed",
        patched(write_file("files/ivr_outbound/extra.dll", b"x")),
        BUNDLE + ": files/ivr_outbound/extra.dll is not listed in patch.json",
    ),
    (
        "downgrade",
        patched(patch_module("manifest_id", 1999)),
        "patch second-6.3.3: module ivr_outbound would go from manifest ID 2000 down to 1999; "
        "refusing the downgrade",
    ),
    (
        "same ID",
        patched(patch_module("manifest_id", 1001, "ivr_inbound")),
        "patch second-6.3.3: module ivr_inbound is already at manifest ID 1001; a patch must "
        "raise it",
    ),
    (
        "module moved",
        patched(patch_module("target", "IVR/Outbound2")),
        'patch second-6.3.3: module ivr_outbound has the target "IVR/Outbound", not '
        '"IVR/Outbound2"; a patch cannot move a module',
    ),
    (
        "truncated archive",
        patched(truncated_tar, patch="{input}/cut.tar.gz"),
        "{input}/cut.tar.gz: cannot extract the bundle: it is not a complete .tar.gz file",
    ),
    (
        "archive member escapes",
        patched(tar_bundle([("../evil.txt", b"x")]), patch="{input}/bad.tar.gz"),
        '{input}/bad.tar.gz: member: expected a safe relative path, got "../evil.txt" (it climbs '
        'out with "..")',
    ),
    (
        "archive with a symlink",
        patched(
            tar_bundle([("b/patch.json", ("symlink", "/etc/passwd"))]), patch="{input}/bad.tar.gz"
        ),
        '{input}/bad.tar.gz: member "b/patch.json" is a symbolic link; a bundle holds only files '
        "and directories",
    ),
    (
        "bundle missing",
        patched(patch="{input}/nowhere"),
        "bundle {input}/nowhere: no such directory or file",
    ),
    (
        "bundle a zip file",
        patched(write_file("../second.zip", b"PK\x03\x04"), patch="{input}/second.zip"),
        "bundle {input}/second.zip: expected a directory or a .tar.gz file",
    ),
    (
        "signing key missing",
        patched(signing_key="missing.key"),
        "signing_key {keys}/missing.key: cannot read it: No such file or directory",
    ),
    (
        "signing key is the public key",
        patched(public_key_file, signing_key="enterprise.pub"),
        'signing_key {keys}/enterprise.pub: expected a PEM "PRIVATE KEY" block, found "PUBLIC KEY"',
    ),
    (
        "signing key is RSA",
        patched(rsa_key_file, signing_key="rsa.key"),
        "signing_key {keys}/rsa.key: expected an Ed25519 key, found an RSA key",
    ),
    (
        "signed enterprise without a key",
        patched(signing_key=None),
        "{dist}/manifest.json.sig exists: the enterprise signs its manifest, so give signing_key "
        "to sign the patched one (or remove manifest.json.sig to stop signing)",
    ),
    (
        "enterprise manifest changed after signing",
        patched(in_dist(tamper_dist_manifest)),
        "{dist}/manifest.json does not match its signature by key {key} (signature file "
        "{dist}/manifest.json.sig holds no signature of this manifest (sha256 {sha}): the "
        "manifest was altered after it was signed); refusing to sign it again: restore the "
        "signed manifest or remove manifest.json.sig",
    ),
    (
        "enterprise signature file damaged",
        patched(in_dist(lambda dist: (dist / "manifest.json.sig").write_text("[]"))),
        "signature file {dist}/manifest.json.sig: expected an object, got []; restore it or "
        "remove it before signing again",
    ),
    (
        "enterprise manifest damaged",
        patched(in_dist(lambda dist: (dist / "manifest.json").write_text('{"format": 1,'))),
        "enterprise manifest {dist}/manifest.json: invalid JSON at line 1 column 14: Expecting "
        "property name enclosed in double quotes",
    ),
    (
        "no dist_dir",
        lambda site: {"patch": str(site.bundle())},
        "missing required arguments: dist_dir",
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("setup", "message"), [case[1:] for case in PATCHES], ids=[case[0] for case in PATCHES]
)
def test_a_bad_patch_is_refused_and_the_enterprise_is_unchanged(run_module, site, setup, message):
    message = message.replace("{sha}", tampered_sha(site))

    run_case(run_module, site, enterprise_patch, setup, message)


def test_the_site_of_these_cases_is_sound(run_module, site):
    """The cases fail for their one fault: the untouched site updates and patches cleanly."""
    public_key = signing.public_key_pem(KEY.public)
    args = {
        "enterprise_src": str(site.manifest_path),
        "public_key": public_key,
        "local_manifest": str(site.record_path),
    }

    compared = run_module(manifest_compare, args)
    patched_ = run_module(
        enterprise_patch,
        {
            "dist_dir": str(site.dist),
            "patch": str(SHIPPED / "second-6.3.3"),
            "signing_key": str(site.keys / "enterprise.key"),
        },
    )
    again = run_module(manifest_compare, args)

    assert (compared["failed"], compared["signed_by"]) == (False, KEY.key_id)
    assert [u["module"] for u in compared["updates"]] == ["ivr_inbound", "ivr_upiq"]
    assert (patched_["failed"], patched_["signed"], patched_["serial"]) == (False, True, 3)
    assert [u["new_id"] for u in again["updates"]] == [1002, 2001, 3001]
