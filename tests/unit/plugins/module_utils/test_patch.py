# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Patch bundles: parse, verify, extract safely, plan, apply; the shipped bundles; make_bundle."""

import copy
import fcntl
import hashlib
import importlib.util
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from ansible_collections.prairiefyre.updater.plugins.module_utils import patch as pt
from ansible_collections.prairiefyre.updater.plugins.module_utils import signing
from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import PatchError

REPO = Path(__file__).resolve().parents[4]
SHIPPED = REPO / "lab" / "patches"


def load_make_bundle():
    spec = importlib.util.spec_from_file_location("make_bundle", REPO / "lab" / "make_bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_bundle = load_make_bundle()


def entry(data):
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_bundle(root, patch_id, modules, product_version="6.3.2.0"):
    """Write a bundle directory; modules maps a name to its patch.json entry, where "files" is
    {path: bytes} and becomes the size/sha256 listing."""
    root = Path(root)
    listing = {}
    for name, module in modules.items():
        files = module.get("files", {})
        for path, data in files.items():
            target = root / "files" / name / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        listing[name] = dict(module, files={path: entry(data) for path, data in files.items()})

    root.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": 1,
        "patch_id": patch_id,
        "product_version": product_version,
        "modules": listing,
    }
    (root / "patch.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return str(root)


BASE_MODULES = {
    "ivr_inbound": {
        "manifest_id": 1000,
        "version": "6.3.1.0",
        "target": "IVR/Inbound",
        "services": ["IVR Inbound"],
        "files": {
            "version.txt": b"6.3.1.0\n",
            "Inbound.dll": b"inbound 6.3.1.0\n",
            "old.cfg": b"legacy=1\n",
        },
    },
    "ivr_outbound": {
        "manifest_id": 2000,
        "version": "6.3.1.0",
        "target": "IVR/Outbound",
        "services": ["IVR Outbound"],
        "files": {"version.txt": b"6.3.1.0\n"},
    },
}


@pytest.fixture
def base(tmp_path):
    """dist_dir with the base bundle applied; returns the dist path."""
    dist = str(tmp_path / "dist")
    pt.apply_patch(dist, write_bundle(tmp_path / "base", "base-1", BASE_MODULES, "6.3.1.0"))
    return dist


def tree(root):
    """Every file under root as {relative path: bytes}, to prove what a run did not touch."""
    found = {}
    for current, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(current, name)
            found[os.path.relpath(path, root)] = Path(path).read_bytes()
    return found


def manifest_of(dist):
    return json.loads(Path(dist, "manifest.json").read_text(encoding="utf-8"))


# --- parse_patch -------------------------------------------------------------------------------


def good_patch():
    return {
        "format": 1,
        "patch_id": "p-1",
        "product_version": "6.3.2.0",
        "modules": {
            "ivr_inbound": {
                "version": "6.3.2.0",
                "files": {"version.txt": entry(b"6.3.2.0\n")},
                "remove": ["old.cfg"],
            }
        },
    }


def with_module_key(key, value):
    doc = good_patch()
    doc["modules"]["ivr_inbound"][key] = value
    return doc


def test_parse_patch_fills_in_the_optional_keys():
    doc = good_patch()
    del doc["modules"]["ivr_inbound"]["remove"]

    assert pt.parse_patch(json.dumps(doc))["modules"]["ivr_inbound"] == {
        "version": "6.3.2.0",
        "files": {"version.txt": entry(b"6.3.2.0\n")},
        "remove": [],
    }


BAD_PATCHES = [
    (
        "format 2",
        dict(good_patch(), format=2),
        "format: expected 1 (the only format this collection reads), got 2",
    ),
    (
        "no modules",
        dict(good_patch(), modules={}),
        "modules: expected a non-empty object of modules, got {}",
    ),
    (
        "patch ID with spaces",
        dict(good_patch(), patch_id="my patch"),
        'patch_id: expected a patch ID of letters, digits and . _ - (at most 100), got "my patch"',
    ),
    ("unknown top key", dict(good_patch(), sign="x"), 'patch: unknown key "sign"'),
    (
        "missing version",
        {**good_patch(), "modules": {"ivr_inbound": {"files": {}}}},
        'modules.ivr_inbound: missing key "version"',
    ),
    (
        "unknown module key",
        with_module_key("delete", []),
        'modules.ivr_inbound: unknown key "delete"',
    ),
    (
        "remove a string",
        with_module_key("remove", "old.cfg"),
        'modules.ivr_inbound.remove: expected a list of paths, got "old.cfg"',
    ),
    (
        "remove climbs out",
        with_module_key("remove", ["../x"]),
        'modules.ivr_inbound.remove[0]: expected a safe relative path, got "../x" (it climbs out '
        'with "..")',
    ),
    (
        "remove a listed file",
        with_module_key("remove", ["version.txt"]),
        'modules.ivr_inbound.remove[0]: "version.txt" is also listed in files',
    ),
    (
        "remove twice",
        with_module_key("remove", ["a", "a"]),
        'modules.ivr_inbound.remove[1]: "a" is listed twice',
    ),
    (
        "manifest_id a string",
        with_module_key("manifest_id", "1001"),
        'modules.ivr_inbound.manifest_id: expected an integer >= 0, got "1001"',
    ),
    (
        "sha256 wrong",
        with_module_key("files", {"version.txt": {"size": 8, "sha256": "x"}}),
        'modules.ivr_inbound.files["version.txt"].sha256: expected 64 lowercase hex digits, got '
        '"x"',
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("doc", "message"), [case[1:] for case in BAD_PATCHES], ids=[case[0] for case in BAD_PATCHES]
)
def test_bad_patch_json_is_refused(doc, message):
    before = copy.deepcopy(doc)

    with pytest.raises(PatchError) as raised:
        pt.parse_patch(doc)

    assert str(raised.value) == message
    assert doc == before


# --- applying ----------------------------------------------------------------------------------


def test_first_bundle_creates_the_manifest_and_packages(tmp_path):
    dist = str(tmp_path / "dist")
    bundle = write_bundle(tmp_path / "base", "base-1", BASE_MODULES, "6.3.1.0")

    result = pt.apply_patch(dist, bundle)

    assert result["changed"] is True
    assert result["before"] is None
    assert result["modules"] == [
        {"module": "ivr_inbound", "old_id": None, "new_id": 1000},
        {"module": "ivr_outbound", "old_id": None, "new_id": 2000},
    ]
    assert manifest_of(dist) == result["manifest"] == result["after"]
    assert (result["manifest"]["serial"], result["manifest"]["patches"]) == (1, ["base-1"])
    assert Path(dist, "packages/ivr_inbound/1000/old.cfg").read_bytes() == b"legacy=1\n"


def test_patch_builds_the_complete_file_set_and_raises_the_ids(base, tmp_path):
    bundle = write_bundle(
        tmp_path / "p",
        "p-1",
        {
            "ivr_inbound": {
                "manifest_id": 1001,
                "version": "6.3.2.0",
                "files": {"version.txt": b"6.3.2.0\n", "Prompts/new.txt": b"hello\n"},
                "remove": ["old.cfg"],
            }
        },
    )

    result = pt.apply_patch(base, bundle)

    assert result["modules"] == [{"module": "ivr_inbound", "old_id": 1000, "new_id": 1001}]
    assert tree(Path(base, "packages/ivr_inbound/1001")) == {
        "Inbound.dll": b"inbound 6.3.1.0\n",
        "Prompts/new.txt": b"hello\n",
        "version.txt": b"6.3.2.0\n",
    }
    manifest = manifest_of(base)
    assert manifest["serial"] == 2
    assert manifest["patches"] == ["base-1", "p-1"]
    assert manifest["product_version"] == "6.3.2.0"
    assert manifest["modules"]["ivr_inbound"]["version"] == "6.3.2.0"
    assert sorted(manifest["modules"]["ivr_inbound"]["files"]) == [
        "Inbound.dll",
        "Prompts/new.txt",
        "version.txt",
    ]
    assert manifest["modules"]["ivr_outbound"] == result["before"]["modules"]["ivr_outbound"]
    assert Path(base, "packages/ivr_inbound/1000/old.cfg").is_file()


def test_omitted_manifest_id_becomes_current_plus_one(base, tmp_path):
    bundle = write_bundle(
        tmp_path / "p",
        "p-1",
        {"ivr_outbound": {"version": "6.3.2.0", "files": {"version.txt": b"6.3.2.0\n"}}},
    )

    result = pt.apply_patch(base, bundle)

    assert result["modules"] == [{"module": "ivr_outbound", "old_id": 2000, "new_id": 2001}]


def test_patch_may_add_a_module_and_change_services(base, tmp_path):
    bundle = write_bundle(
        tmp_path / "p",
        "p-1",
        {
            "ivr_upiq": {
                "manifest_id": 1,
                "version": "1.0",
                "target": "IVR/UpIQ",
                "services": ["IVR UpIQ"],
                "files": {"version.txt": b"1.0\n"},
            },
            "ivr_outbound": {
                "version": "6.3.1.1",
                "services": ["IVR Outbound", "IVR UpIQ"],
            },
        },
    )

    result = pt.apply_patch(base, bundle)

    assert result["modules"] == [
        {"module": "ivr_outbound", "old_id": 2000, "new_id": 2001},
        {"module": "ivr_upiq", "old_id": None, "new_id": 1},
    ]
    assert manifest_of(base)["modules"]["ivr_outbound"]["services"] == ["IVR Outbound", "IVR UpIQ"]
    assert tree(Path(base, "packages/ivr_outbound/2001")) == {"version.txt": b"6.3.1.0\n"}


def test_applying_the_same_patch_twice_changes_nothing(base, tmp_path):
    bundle = write_bundle(
        tmp_path / "p",
        "p-1",
        {"ivr_inbound": {"manifest_id": 1001, "version": "6.3.2.0", "remove": ["old.cfg"]}},
    )
    pt.apply_patch(base, bundle)
    before = tree(base)

    result = pt.apply_patch(base, bundle)

    assert (result["changed"], result["modules"]) == (False, [])
    assert result["manifest"] == manifest_of(base)
    assert tree(base) == before


def test_an_older_patch_applied_again_after_a_newer_one_changes_nothing(base, tmp_path):
    first = write_bundle(
        tmp_path / "p1", "p-1", {"ivr_inbound": {"manifest_id": 1001, "version": "6.3.2.0"}}
    )
    second = write_bundle(
        tmp_path / "p2", "p-2", {"ivr_inbound": {"manifest_id": 1002, "version": "6.3.3.0"}}
    )
    pt.apply_patch(base, first)
    pt.apply_patch(base, second)

    result = pt.apply_patch(base, first)

    assert (result["changed"], result["manifest"]["modules"]["ivr_inbound"]["manifest_id"]) == (
        False,
        1002,
    )


def test_check_mode_plans_and_writes_nothing(base, tmp_path):
    bundle = write_bundle(
        tmp_path / "p",
        "p-1",
        {"ivr_inbound": {"manifest_id": 1001, "version": "6.3.2.0", "remove": ["old.cfg"]}},
    )
    before = tree(base)

    planned = pt.apply_patch(base, bundle, check_mode=True)

    assert tree(base) == before
    assert planned == pt.apply_patch(base, bundle)


def test_check_mode_on_a_missing_dist_creates_nothing(tmp_path):
    bundle = write_bundle(tmp_path / "base", "base-1", BASE_MODULES, "6.3.1.0")

    result = pt.apply_patch(str(tmp_path / "dist"), bundle, check_mode=True)

    assert (result["changed"], result["manifest"]["serial"]) == (True, 1)
    assert not (tmp_path / "dist").exists()


def test_a_stale_package_from_a_crashed_run_is_replaced(base, tmp_path):
    stale = Path(base, "packages/ivr_outbound/2001")
    stale.mkdir()
    (stale / "junk").write_bytes(b"half written")
    bundle = write_bundle(
        tmp_path / "p", "p-1", {"ivr_outbound": {"version": "6.3.2.0", "files": {"a": b"a"}}}
    )

    pt.apply_patch(base, bundle)

    assert tree(stale) == {"a": b"a", "version.txt": b"6.3.1.0\n"}


PLAN_ERRORS = [
    (
        "downgrade",
        {"ivr_inbound": {"manifest_id": 999, "version": "6.3.0.0"}},
        "patch p-9: module ivr_inbound would go from manifest ID 1000 down to 999; refusing the "
        "downgrade",
    ),
    (
        "same ID",
        {"ivr_inbound": {"manifest_id": 1000, "version": "6.3.1.0"}},
        "patch p-9: module ivr_inbound is already at manifest ID 1000; a patch must raise it",
    ),
    (
        "move",
        {"ivr_inbound": {"version": "6.3.2.0", "target": "IVR/In"}},
        'patch p-9: module ivr_inbound has the target "IVR/Inbound", not "IVR/In"; a patch '
        "cannot move a module",
    ),
    (
        "remove a file the module lacks",
        {"ivr_inbound": {"version": "6.3.2.0", "remove": ["nope.cfg"]}},
        'patch p-9: module ivr_inbound has no file "nope.cfg" to remove',
    ),
    (
        "new module without target",
        {"ivr_upiq": {"manifest_id": 1, "version": "1.0", "services": ["IVR UpIQ"]}},
        'patch p-9: module ivr_upiq is new to the enterprise, so patch.json must give its "target"',
    ),
    (
        "new module without ID",
        {"ivr_upiq": {"version": "1.0"}},
        "patch p-9: module ivr_upiq is new to the enterprise, so patch.json must give its "
        '"manifest_id"',
    ),
    (
        "new module removing",
        {
            "ivr_upiq": {
                "manifest_id": 1,
                "version": "1.0",
                "target": "IVR/UpIQ",
                "services": ["IVR UpIQ"],
                "remove": ["x"],
            }
        },
        "patch p-9: module ivr_upiq is new to the enterprise; it has no file to remove",
    ),
    (
        "new module in another module's directory",
        {
            "ivr_upiq": {
                "manifest_id": 1,
                "version": "1.0",
                "target": "IVR/Inbound/UpIQ",
                "services": ["IVR UpIQ"],
                "files": {"version.txt": b"1.0\n"},
            }
        },
        'patch p-9 would make an invalid manifest: modules.ivr_upiq.target: "IVR/Inbound/UpIQ" '
        'overlaps the target "IVR/Inbound" of module ivr_inbound',
    ),
    (
        "module left without files",
        {"ivr_outbound": {"version": "6.3.2.0", "remove": ["version.txt"]}},
        "patch p-9 would make an invalid manifest: modules.ivr_outbound.files: expected a "
        "non-empty object of files, got {}",
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("modules", "message"),
    [case[1:] for case in PLAN_ERRORS],
    ids=[case[0] for case in PLAN_ERRORS],
)
def test_patch_that_breaks_a_rule_is_refused_and_writes_nothing(base, tmp_path, modules, message):
    bundle = write_bundle(tmp_path / "p", "p-9", modules)
    before = tree(base)

    with pytest.raises(PatchError) as raised:
        pt.apply_patch(base, bundle)

    assert str(raised.value) == message
    assert tree(base) == before


@pytest.mark.bad_input
def test_a_changed_bundle_with_an_applied_patch_id_is_refused(base, tmp_path):
    modules = {"ivr_inbound": {"manifest_id": 1001, "version": "6.3.2.0", "files": {"a": b"1"}}}
    pt.apply_patch(base, write_bundle(tmp_path / "p", "p-1", modules))
    modules["ivr_inbound"]["files"] = {"a": b"2"}

    with pytest.raises(PatchError) as raised:
        pt.apply_patch(base, write_bundle(tmp_path / "p-again", "p-1", modules))

    assert str(raised.value) == (
        "patch p-1 is already applied, but its module ivr_inbound differs from the enterprise's "
        "manifest ID 1001; a changed bundle needs a new patch_id"
    )


@pytest.mark.bad_input
def test_an_applied_patch_id_above_the_enterprise_is_refused(base, tmp_path):
    modules = {"ivr_inbound": {"manifest_id": 1001, "version": "6.3.2.0"}}
    pt.apply_patch(base, write_bundle(tmp_path / "p", "p-1", modules))
    modules["ivr_inbound"]["manifest_id"] = 1005

    with pytest.raises(PatchError) as raised:
        pt.apply_patch(base, write_bundle(tmp_path / "p-again", "p-1", modules))

    assert str(raised.value) == (
        "patch p-1 is recorded as applied, but module ivr_inbound is at manifest ID 1001, below "
        "the patch's 1005"
    )


# --- failures leave the enterprise as it was ---------------------------------------------------


@pytest.mark.bad_input
def test_a_damaged_current_package_stops_the_patch(base, tmp_path):
    Path(base, "packages/ivr_inbound/1000/Inbound.dll").write_bytes(b"inbound 6.3.1.X\n")
    before = tree(base)
    bundle = write_bundle(
        tmp_path / "p",
        "p-1",
        {
            "ivr_outbound": {"version": "6.3.2.0", "files": {"a": b"a"}},
            "ivr_inbound": {"version": "6.3.2.0"},
        },
    )

    with pytest.raises(PatchError) as raised:
        pt.apply_patch(base, bundle)

    found = hashlib.sha256(b"inbound 6.3.1.X\n").hexdigest()
    listed = hashlib.sha256(b"inbound 6.3.1.0\n").hexdigest()
    assert str(raised.value) == (
        f"{base}/packages/ivr_inbound/1000/Inbound.dll changed or is damaged: it has 16 bytes and "
        f"sha256 {found}, the manifest says 16 bytes and {listed}"
    )
    assert tree(base) == before
    assert sorted(os.listdir(base)) == [".patch.lock", "manifest.json", "packages"]


@pytest.mark.bad_input
def test_a_failed_manifest_write_removes_the_new_packages(base, tmp_path, monkeypatch):
    before = tree(base)
    bundle = write_bundle(
        tmp_path / "p", "p-1", {"ivr_outbound": {"version": "6.3.2.0", "files": {"a": b"a"}}}
    )

    def disk_full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pt, "write_bytes_atomic", disk_full)
    with pytest.raises(PatchError) as raised:
        pt.apply_patch(base, bundle)

    assert str(raised.value) == (
        f"cannot write {base}/manifest.json: [Errno 28] No space left on device"
    )
    assert tree(base) == before
    assert not Path(base, "packages/ivr_outbound/2001").exists()


@pytest.mark.bad_input
def test_a_second_patch_at_the_same_time_is_refused(base, tmp_path):
    bundle = write_bundle(
        tmp_path / "p", "p-1", {"ivr_outbound": {"version": "6.3.2.0", "files": {"a": b"a"}}}
    )

    with open(Path(base, ".patch.lock"), "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(PatchError) as raised:
            pt.apply_patch(base, bundle)

    assert str(raised.value) == f"another patch is being applied to {base} (it holds .patch.lock)"


# --- bundle verification -----------------------------------------------------------------------


def bundle_with(tmp_path, mutate):
    """A valid one-module bundle, then mutate(root, patch_doc) to break it."""
    root = Path(
        write_bundle(
            tmp_path / "b",
            "p-1",
            {"ivr_outbound": {"version": "6.3.2.0", "files": {"version.txt": b"6.3.2.0\n"}}},
        )
    )
    doc = json.loads((root / "patch.json").read_text(encoding="utf-8"))
    mutate(root, doc)
    if (root / "patch.json").exists():
        (root / "patch.json").write_text(json.dumps(doc), encoding="utf-8")
    return str(root)


def set_listed(key, value):
    def mutate(root, doc):
        doc["modules"]["ivr_outbound"]["files"]["version.txt"][key] = value

    return mutate


def add_file(relative, data=b"x"):
    def mutate(root, doc):
        path = root / "files" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return mutate


def link_file(root, doc):
    os.symlink("/etc/hostname", root / "files" / "ivr_outbound" / "link.txt")


def remove_file(root, doc):
    (root / "files" / "ivr_outbound" / "version.txt").unlink()


def remove_patch_json(root, doc):
    (root / "patch.json").unlink()


BAD_BUNDLES = [
    (
        "size differs",
        set_listed("size", 9),
        "bundle {b}: files/ivr_outbound/version.txt: size is 8 bytes, patch.json says 9",
    ),
    (
        "sha256 differs",
        set_listed("sha256", "0" * 64),
        "bundle {b}: files/ivr_outbound/version.txt: sha256 is "
        + hashlib.sha256(b"6.3.2.0\n").hexdigest()
        + ", patch.json says "
        + "0" * 64,
    ),
    (
        "listed file missing",
        remove_file,
        "bundle {b}: files/ivr_outbound/version.txt is listed in patch.json but missing",
    ),
    (
        "unlisted file",
        add_file("ivr_outbound/extra.dll"),
        "bundle {b}: files/ivr_outbound/extra.dll is not listed in patch.json",
    ),
    (
        "files of an unlisted module",
        add_file("ivr_upiq/version.txt"),
        "bundle {b}: files/ivr_upiq/version.txt is not listed in patch.json",
    ),
    (
        "symbolic link",
        link_file,
        "bundle {b}: files/ivr_outbound/link.txt is a symbolic link; a bundle holds only files "
        "and directories",
    ),
    (
        "no patch.json",
        remove_patch_json,
        "bundle {b}: no patch.json at its top or in its one top directory",
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("mutate", "message"), [case[1:] for case in BAD_BUNDLES], ids=[case[0] for case in BAD_BUNDLES]
)
def test_a_bundle_that_does_not_match_its_patch_json_is_refused(base, tmp_path, mutate, message):
    bundle = bundle_with(tmp_path, mutate)
    before = tree(base)

    with pytest.raises(PatchError) as raised:
        pt.apply_patch(base, bundle)

    assert str(raised.value) == message.format(b=bundle)
    assert tree(base) == before


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing", "bundle {p}: no such directory or file"),
        ("bundle.zip", "bundle {p}: expected a directory or a .tar.gz file"),
    ],
)
def test_a_bundle_path_that_is_no_bundle_is_refused(tmp_path, name, message):
    path = tmp_path / name
    if name.endswith(".zip"):
        path.write_bytes(b"PK")

    with pytest.raises(PatchError) as raised:
        pt.apply_patch(str(tmp_path / "dist"), str(path))

    assert str(raised.value) == message.format(p=path)


# --- .tar.gz bundles ---------------------------------------------------------------------------


def test_a_tar_gz_bundle_applies_like_its_directory(tmp_path):
    bundle = write_bundle(tmp_path / "base-1", "base-1", BASE_MODULES, "6.3.1.0")
    archive = str(tmp_path / "base-1.tar.gz")
    make_bundle.write_tar(bundle, archive)

    from_tar = pt.apply_patch(str(tmp_path / "dist-tar"), archive)
    from_dir = pt.apply_patch(str(tmp_path / "dist-dir"), bundle)

    assert from_tar == from_dir
    assert tree(tmp_path / "dist-tar") == tree(tmp_path / "dist-dir")


def test_a_tar_gz_without_a_top_directory_applies(tmp_path):
    bundle = write_bundle(tmp_path / "b", "base-1", BASE_MODULES, "6.3.1.0")
    archive = tmp_path / "flat.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bundle, arcname=".")

    assert pt.apply_patch(str(tmp_path / "dist"), str(archive))["changed"] is True


def tar_with(tmp_path, member, data=b""):
    """A .tar.gz holding a valid bundle plus one extra member."""
    archive = tmp_path / "evil.tar.gz"
    bundle = write_bundle(tmp_path / "b", "base-1", BASE_MODULES, "6.3.1.0")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bundle, arcname="b")
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return str(archive)


def member(name, kind=tarfile.REGTYPE, size=0, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.linkname = linkname
    return info


EVIL_MEMBERS = [
    (
        "climbs out",
        member("b/../../escape.txt", size=1),
        'member: expected a safe relative path, got "b/../../escape.txt" (it climbs out with "..")',
    ),
    (
        "absolute",
        member("/tmp/escape.txt", size=1),
        'member: expected a safe relative path, got "/tmp/escape.txt" (it is absolute)',
    ),
    (
        "symbolic link",
        member("b/files/ivr_outbound/passwd", tarfile.SYMTYPE, linkname="/etc/passwd"),
        'member "b/files/ivr_outbound/passwd" is a symbolic link; a bundle holds only files and '
        "directories",
    ),
    (
        "hard link",
        member("b/files/ivr_outbound/passwd", tarfile.LNKTYPE, linkname="/etc/passwd"),
        'member "b/files/ivr_outbound/passwd" is a hard link; a bundle holds only files and '
        "directories",
    ),
    (
        "device",
        member("b/files/ivr_outbound/null", tarfile.CHRTYPE),
        'member "b/files/ivr_outbound/null" is a device; a bundle holds only files and directories',
    ),
    (
        "FIFO",
        member("b/files/ivr_outbound/pipe", tarfile.FIFOTYPE),
        'member "b/files/ivr_outbound/pipe" is a FIFO; a bundle holds only files and directories',
    ),
    (
        "duplicate",
        member("b/patch.json", size=1),
        'member "b/patch.json" appears twice',
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("evil", "message"), [case[1:] for case in EVIL_MEMBERS], ids=[case[0] for case in EVIL_MEMBERS]
)
def test_an_unsafe_tar_member_is_refused_before_it_is_written(tmp_path, evil, message):
    archive = tar_with(tmp_path, evil, b"x" * evil.size)

    with pytest.raises(PatchError) as raised:
        pt.apply_patch(str(tmp_path / "dist"), archive)

    assert str(raised.value) == f"{archive}: {message}"
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "dist").exists()


def truncated_archive(path):
    make_bundle.write_tar(str(SHIPPED / "base-6.3.1"), str(path))
    path.write_bytes(path.read_bytes()[:-40])


def garbage_archive(path):
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")


def empty_archive(path):
    path.write_bytes(b"")


@pytest.mark.bad_input
@pytest.mark.parametrize("damage", [truncated_archive, garbage_archive, empty_archive])
def test_a_damaged_archive_is_refused(tmp_path, damage):
    archive = tmp_path / "broken.tar.gz"
    damage(archive)

    with pytest.raises(PatchError) as raised:
        pt.apply_patch(str(tmp_path / "dist"), str(archive))

    assert str(raised.value) == (
        f"{archive}: cannot extract the bundle: it is not a complete .tar.gz file"
    )
    assert not (tmp_path / "dist").exists()


# --- the shipped bundles and make_bundle -------------------------------------------------------


@pytest.mark.parametrize("name", ["base-6.3.1", "sample-6.3.2", "second-6.3.3"])
def test_shipped_bundle_lists_true_sizes_and_hashes(name):
    bundle = str(SHIPPED / name)

    assert make_bundle.main([bundle, "--check"]) == 0
    with pt.open_bundle(bundle) as root:
        patch, sources = pt.load_bundle(root, bundle)
    assert patch["patch_id"] == name
    assert len(sources) == sum(len(module["files"]) for module in patch["modules"].values())


def test_shipped_bundles_make_the_documented_releases(tmp_path):
    dist = str(tmp_path / "dist")

    base = pt.apply_patch(dist, str(SHIPPED / "base-6.3.1"))
    sample = pt.apply_patch(dist, str(SHIPPED / "sample-6.3.2"))

    assert base["modules"] == [
        {"module": "ivr_inbound", "old_id": None, "new_id": 1000},
        {"module": "ivr_outbound", "old_id": None, "new_id": 2000},
        {"module": "ivr_upiq", "old_id": None, "new_id": 3000},
    ]
    assert sample["modules"] == [
        {"module": "ivr_inbound", "old_id": 1000, "new_id": 1001},
        {"module": "ivr_upiq", "old_id": 3000, "new_id": 3001},
    ]
    manifest = manifest_of(dist)
    assert {name: m["target"] for name, m in manifest["modules"].items()} == {
        "ivr_inbound": "IVR/Inbound",
        "ivr_outbound": "IVR/Outbound",
        "ivr_upiq": "IVR/UpIQ",
    }
    assert (manifest["product_version"], manifest["serial"]) == ("6.3.2.0", 2)
    versions = {
        path: Path(dist, "packages", path, "version.txt").read_text()
        for path in ("ivr_inbound/1001", "ivr_outbound/2000", "ivr_upiq/3001")
    }
    assert versions == {
        "ivr_inbound/1001": "6.3.2.0\n",
        "ivr_outbound/2000": "6.3.1.0\n",
        "ivr_upiq/3001": "6.3.2.0\n",
    }


def test_the_second_shipped_patch_raises_inbound_and_outbound_again(tmp_path):
    dist = str(tmp_path / "dist")
    for name in ("base-6.3.1", "sample-6.3.2"):
        pt.apply_patch(dist, str(SHIPPED / name))

    second = pt.apply_patch(dist, str(SHIPPED / "second-6.3.3"))

    assert second["modules"] == [
        {"module": "ivr_inbound", "old_id": 1001, "new_id": 1002},
        {"module": "ivr_outbound", "old_id": 2000, "new_id": 2001},
    ]
    manifest = manifest_of(dist)
    assert (manifest["product_version"], manifest["serial"]) == ("6.3.3.0", 3)
    assert manifest["patches"] == ["base-6.3.1", "sample-6.3.2", "second-6.3.3"]
    assert {name: (m["manifest_id"], m["version"]) for name, m in manifest["modules"].items()} == {
        "ivr_inbound": (1002, "6.3.3.0"),
        "ivr_outbound": (2001, "6.3.3.0"),
        "ivr_upiq": (3001, "6.3.2.0"),
    }
    # Files the patch does not list come from the module's previous package.
    assert sorted(manifest["modules"]["ivr_inbound"]["files"]) == [
        "Inbound.config",
        "Inbound.dll",
        "Prompts/welcome.txt",
        "version.txt",
    ]


def test_make_bundle_fills_in_sizes_and_hashes(tmp_path):
    root = Path(write_bundle(tmp_path / "b", "p-1", copy.deepcopy(BASE_MODULES)))
    doc = json.loads((root / "patch.json").read_text(encoding="utf-8"))
    for module in doc["modules"].values():
        module["files"] = {}
    (root / "patch.json").write_text(json.dumps(doc), encoding="utf-8")

    assert make_bundle.main([str(root), "--check"]) == 1
    assert make_bundle.main([str(root)]) == 0
    assert make_bundle.main([str(root), "--check"]) == 0
    with pt.open_bundle(str(root)) as opened:
        patch, _sources = pt.load_bundle(opened, str(root))
    assert patch["modules"]["ivr_inbound"]["files"]["old.cfg"] == entry(b"legacy=1\n")


def test_make_bundle_tar_is_the_same_bytes_every_time(tmp_path):
    first, second = tmp_path / "1.tar.gz", tmp_path / "2.tar.gz"

    make_bundle.write_tar(str(SHIPPED / "sample-6.3.2"), str(first))
    make_bundle.write_tar(str(SHIPPED / "sample-6.3.2"), str(second))

    assert first.read_bytes() == second.read_bytes()


# --- signing -----------------------------------------------------------------------------------

KEY = signing.SigningKey(b"\x21" * 32)
NEW_KEY = signing.SigningKey(b"\x22" * 32)
OUTBOUND_PATCH = {"ivr_outbound": {"version": "6.3.2.0", "files": {"a": b"a"}}}


def signature_of(dist):
    return json.loads(Path(dist, "manifest.json.sig").read_text(encoding="utf-8"))


def sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def signed(tmp_path):
    """dist_dir with the base bundle applied and signed by KEY."""
    dist = str(tmp_path / "signed")
    pt.apply_patch(
        dist, write_bundle(tmp_path / "base", "base-1", BASE_MODULES, "6.3.1.0"), signing_key=KEY
    )
    return dist


def test_the_first_bundle_is_signed(signed):
    data = Path(signed, "manifest.json").read_bytes()

    doc = signature_of(signed)

    assert (doc["key_id"], [e["sha256"] for e in doc["signatures"]]) == (KEY.key_id, [sha(data)])
    assert signing.check_signature(KEY, data, Path(signed, "manifest.json.sig").read_bytes())


def test_a_signed_patch_signs_the_new_and_the_previous_manifest(signed, tmp_path):
    old = Path(signed, "manifest.json").read_bytes()

    result = pt.apply_patch(signed, write_bundle(tmp_path / "p", "p-1", OUTBOUND_PATCH), False, KEY)

    new = Path(signed, "manifest.json").read_bytes()
    assert (result["changed"], result["signed"], result["key_id"]) == (True, True, KEY.key_id)
    assert [e["sha256"] for e in signature_of(signed)["signatures"]] == [sha(new), sha(old)]
    sig_data = Path(signed, "manifest.json.sig").read_bytes()
    for data in (new, old):
        signing.check_signature(KEY, data, sig_data)


def test_a_signed_patch_applied_again_changes_nothing(signed, tmp_path):
    bundle = write_bundle(tmp_path / "p", "p-1", OUTBOUND_PATCH)
    pt.apply_patch(signed, bundle, signing_key=KEY)
    before = tree(signed)

    result = pt.apply_patch(signed, bundle, signing_key=KEY)

    assert (result["changed"], result["signed"]) == (False, False)
    assert tree(signed) == before


def test_an_unsigned_enterprise_gets_signed_by_an_applied_patch(base, tmp_path):
    bundle = write_bundle(tmp_path / "p", "p-1", OUTBOUND_PATCH)
    pt.apply_patch(base, bundle)
    data = Path(base, "manifest.json").read_bytes()

    checked = pt.apply_patch(base, bundle, check_mode=True, signing_key=KEY)
    assert not Path(base, "manifest.json.sig").exists()
    result = pt.apply_patch(base, bundle, signing_key=KEY)

    assert (checked["changed"], checked["signed"], checked["modules"]) == (True, True, [])
    assert (result["changed"], result["signed"], result["modules"]) == (True, True, [])
    assert Path(base, "manifest.json").read_bytes() == data
    signing.check_signature(KEY, data, Path(base, "manifest.json.sig").read_bytes())


def test_a_new_key_replaces_the_old_keys_signature(signed, tmp_path):
    result = pt.apply_patch(
        signed, write_bundle(tmp_path / "p", "p-1", OUTBOUND_PATCH), signing_key=NEW_KEY
    )

    assert (result["changed"], signature_of(signed)["key_id"]) == (True, NEW_KEY.key_id)
    assert len(signature_of(signed)["signatures"]) == 2


def test_check_mode_signs_nothing(signed, tmp_path):
    before = tree(signed)

    result = pt.apply_patch(signed, write_bundle(tmp_path / "p", "p-1", OUTBOUND_PATCH), True, KEY)

    assert (result["changed"], result["signed"]) == (True, True)
    assert tree(signed) == before


def tamper_manifest(dist):
    path = Path(dist, "manifest.json")
    path.write_bytes(path.read_bytes().replace(b'"6.3.1.0"', b'"6.3.1.9"', 1))


def damage_signature(dist):
    Path(dist, "manifest.json.sig").write_text("{}", encoding="utf-8")


SIGNING_REFUSALS = [
    (
        "signed enterprise, no key",
        lambda dist: None,
        None,
        "{dist}/manifest.json.sig exists: the enterprise signs its manifest, so give signing_key "
        "to sign the patched one (or remove manifest.json.sig to stop signing)",
    ),
    (
        "manifest changed after signing",
        tamper_manifest,
        KEY,
        "{dist}/manifest.json does not match its signature by key {key} (signature file "
        "{dist}/manifest.json.sig holds no signature of this manifest (sha256 {sha}): the "
        "manifest was altered after it was signed); refusing to sign it again: restore the "
        "signed manifest or remove manifest.json.sig",
    ),
    (
        "damaged signature file",
        damage_signature,
        KEY,
        'signature file {dist}/manifest.json.sig: missing key "format"; restore it or remove it '
        "before signing again",
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("damage", "key", "message"),
    [case[1:] for case in SIGNING_REFUSALS],
    ids=[case[0] for case in SIGNING_REFUSALS],
)
def test_a_patch_that_would_break_the_signature_is_refused(signed, tmp_path, damage, key, message):
    damage(signed)
    before = tree(signed)
    bundle = write_bundle(tmp_path / "p", "p-1", OUTBOUND_PATCH)

    with pytest.raises(PatchError) as raised:
        pt.apply_patch(signed, bundle, signing_key=key)

    current = sha(Path(signed, "manifest.json").read_bytes())
    assert str(raised.value) == message.format(dist=signed, key=KEY.key_id, sha=current)
    assert tree(signed) == before


@pytest.mark.bad_input
def test_a_failed_manifest_write_restores_the_signature(signed, tmp_path, monkeypatch):
    before = tree(signed)
    real_write = pt.write_bytes_atomic

    def manifest_disk_full(path, data, mode=0o644):
        if path.endswith("manifest.json"):
            raise OSError(28, "No space left on device")
        real_write(path, data, mode)

    monkeypatch.setattr(pt, "write_bytes_atomic", manifest_disk_full)
    with pytest.raises(PatchError) as raised:
        pt.apply_patch(signed, write_bundle(tmp_path / "p", "p-1", OUTBOUND_PATCH), False, KEY)

    assert str(raised.value) == (
        f"cannot write {signed}/manifest.json: [Errno 28] No space left on device"
    )
    assert tree(signed) == before
