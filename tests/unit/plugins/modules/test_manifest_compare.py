# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""manifest_compare, run through its main() with the run_module fixture."""

import json
from pathlib import Path

import pytest
import yaml
from ansible_collections.prairiefyre.updater.plugins.module_utils import signing
from ansible_collections.prairiefyre.updater.plugins.modules import manifest_compare

SHA = "c" * 64


def module_entry(manifest_id, target, service, version):
    return {
        "manifest_id": manifest_id,
        "version": version,
        "target": target,
        "services": [service],
        "files": {"version.txt": {"size": 8, "sha256": SHA}},
    }


ENTERPRISE = {
    "format": 1,
    "serial": 2,
    "product_version": "6.3.2.0",
    "patches": ["base-6.3.1", "sample-6.3.2"],
    "modules": {
        "ivr_inbound": module_entry(1001, "IVR/Inbound", "IVR Inbound", "6.3.2.0"),
        "ivr_outbound": module_entry(2000, "IVR/Outbound", "IVR Outbound", "6.3.1.0"),
        "ivr_upiq": module_entry(3001, "IVR/UpIQ", "IVR UpIQ", "6.3.2.0"),
    },
}


def record(inbound=1000, outbound=2000, upiq=3000):
    def entry(manifest_id):
        return {"manifest_id": manifest_id, "version": "6.3.1.0", "updated": "2026-12-01T10:00:00Z"}

    return {
        "format": 1,
        "serial": 1,
        "modules": {
            "ivr_inbound": entry(inbound),
            "ivr_outbound": entry(outbound),
            "ivr_upiq": entry(upiq),
        },
    }


def update(module, old_id, new_id, old_version="6.3.1.0"):
    entry = ENTERPRISE["modules"][module]
    return {
        "module": module,
        "old_id": old_id,
        "new_id": new_id,
        "old_version": old_version,
        "new_version": entry["version"],
        "target": entry["target"],
        "services": entry["services"],
        "files": entry["files"],
    }


@pytest.fixture
def files(tmp_path):
    """Write the enterprise manifest and a host record; return a dict of their paths."""
    enterprise = tmp_path / "dist" / "manifest.json"
    enterprise.parent.mkdir()
    enterprise.write_text(json.dumps(ENTERPRISE), encoding="utf-8")
    host = tmp_path / "install" / ".updater" / "manifest.json"
    host.parent.mkdir(parents=True)
    host.write_text(json.dumps(record()), encoding="utf-8")
    return {"enterprise": str(enterprise), "record": str(host), "tmp": tmp_path}


def test_without_a_record_it_only_reads_and_validates(run_module, files):
    result = run_module(manifest_compare, {"enterprise_src": files["enterprise"]})

    assert result == {
        "changed": False,
        "failed": False,
        "enterprise": ENTERPRISE,
        "signed_by": None,
        "msg": f"The enterprise manifest {files['enterprise']} is valid: serial 2, product "
        "6.3.2.0, 3 modules.",
    }


@pytest.mark.parametrize("check_mode", [False, True], ids=["run", "check mode"])
def test_lists_the_modules_that_are_newer(run_module, files, check_mode):
    args = {"enterprise_src": files["enterprise"], "local_manifest": files["record"]}

    result = run_module(manifest_compare, args, check_mode=check_mode)

    assert result["changed"] is False
    assert result["updates"] == [update("ivr_inbound", 1000, 1001), update("ivr_upiq", 3000, 3001)]
    assert result["services"] == ["IVR Inbound", "IVR UpIQ"]
    assert result["up_to_date"] is False
    assert (
        result["msg"]
        == "2 modules need an update: ivr_inbound 1000 -> 1001, ivr_upiq 3000 -> 3001."
    )
    assert result["leftover_leases"] == []


def test_lists_the_leases_and_drains_a_cut_off_run_left(run_module, files):
    leases = Path(files["record"]).parent / "leases"
    leases.mkdir()
    lease = {
        "service": "IVR UpIQ",
        "kind": "lease",
        "lease_id": "L7",
        "url": "http://127.0.0.1:1",
        "recorded_at": 1.0,
        "ends_at": 901.0,
    }
    drain = {**lease, "service": "IVR Inbound", "kind": "drain", "lease_id": None}
    (leases / "ivr_upiq.json").write_text(json.dumps(lease), encoding="utf-8")
    (leases / "ivr_inbound.json").write_text(json.dumps(drain), encoding="utf-8")
    (leases / ".ivr_outbound.json.x1.tmp").write_text("{", encoding="utf-8")
    args = {"enterprise_src": files["enterprise"], "local_manifest": files["record"]}

    result = run_module(manifest_compare, args)

    assert result["leftover_leases"] == [drain, lease]
    assert result["msg"].endswith(" A cut-off run left drain on IVR Inbound, lease on IVR UpIQ.")


CASES = [
    (
        "up to date",
        {"local_manifest": "record:1001,2000,3001"},
        {
            "updates": [],
            "services": [],
            "up_to_date": True,
            "msg": "The host is up to date with the enterprise manifest (serial 2, product "
            "6.3.2.0).",
        },
    ),
    (
        "no record yet",
        {"local_manifest": "missing"},
        {
            "updates": [
                update("ivr_inbound", None, 1001, None),
                update("ivr_outbound", None, 2000, None),
                update("ivr_upiq", None, 3001, None),
            ],
            "services": ["IVR Inbound", "IVR Outbound", "IVR UpIQ"],
            "up_to_date": False,
            "msg": "3 modules need an update: ivr_inbound none -> 1001, ivr_outbound none -> "
            "2000, ivr_upiq none -> 3001.",
        },
    ),
    (
        "limited to one module",
        {"local_manifest": "record:1000,2000,3000", "modules": ["ivr_upiq"]},
        {
            "updates": [update("ivr_upiq", 3000, 3001)],
            "services": ["IVR UpIQ"],
            "up_to_date": False,
            "msg": "1 module needs an update: ivr_upiq 3000 -> 3001.",
        },
    ),
    (
        "downgrade allowed",
        {"local_manifest": "record:1001,2005,3001", "allow_downgrade": True},
        {
            "updates": [update("ivr_outbound", 2005, 2000)],
            "services": ["IVR Outbound"],
            "up_to_date": False,
            "msg": "1 module needs an update: ivr_outbound 2005 -> 2000.",
        },
    ),
]


def resolve(args, files):
    """Turn the table's shorthand for local_manifest into a real path."""
    args = dict(args, enterprise_manifest=ENTERPRISE)
    spec = args["local_manifest"]
    if spec == "missing":
        args["local_manifest"] = str(files["tmp"] / "nowhere" / "manifest.json")
    elif spec.startswith("record:"):
        ids = [int(part) for part in spec.split(":")[1].split(",")]
        path = files["tmp"] / "other.json"
        path.write_text(json.dumps(record(*ids)), encoding="utf-8")
        args["local_manifest"] = str(path)
    return args


@pytest.mark.parametrize(
    ("args", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_compare_from_a_given_manifest(run_module, files, args, expected):
    result = run_module(manifest_compare, resolve(args, files))

    assert {key: result[key] for key in expected} == expected
    assert (result["changed"], result["failed"]) == (False, False)


def test_reads_the_manifest_over_http(run_module, http_dir):
    root, base = http_dir
    (root / "manifest.json").write_text(json.dumps(ENTERPRISE), encoding="utf-8")

    result = run_module(manifest_compare, {"enterprise_src": f"{base}/manifest.json", "timeout": 5})

    assert (result["failed"], result["enterprise"]) == (False, ENTERPRISE)


FAILURES = [
    ("no source", {}, "one of the following is required: enterprise_src, enterprise_manifest"),
    (
        "two sources",
        {"enterprise_src": "{enterprise}", "enterprise_manifest": ENTERPRISE},
        "parameters are mutually exclusive: enterprise_src|enterprise_manifest",
    ),
    (
        "downgrade",
        {"enterprise_src": "{enterprise}", "local_manifest": "{downgraded}"},
        "module ivr_inbound: the enterprise offers manifest ID 1001, lower than the 1002 the host "
        "has recorded; refusing the downgrade (set allow_downgrade to install it)",
    ),
    (
        "invalid enterprise file",
        {"enterprise_src": "{invalid}"},
        "enterprise manifest {invalid}: modules.ivr_upiq.manifest_id: expected an integer >= 0, "
        'got "3001"',
    ),
    (
        "invalid given manifest",
        {"enterprise_manifest": dict(ENTERPRISE, serial=-1)},
        "enterprise manifest (enterprise_manifest): serial: expected an integer >= 0, got -1",
    ),
    (
        "damaged record",
        {"enterprise_src": "{enterprise}", "local_manifest": "{damaged}"},
        "host record {damaged}: invalid JSON at line 1 column 1: Expecting value",
    ),
    (
        "record is a directory",
        {"enterprise_src": "{enterprise}", "local_manifest": "{tmp}"},
        "cannot read {tmp}: Is a directory",
    ),
    (
        "unknown module",
        {"enterprise_src": "{enterprise}", "local_manifest": "{record}", "modules": ["fax"]},
        'modules: "fax" is not a module of the enterprise manifest (it has ivr_inbound, '
        "ivr_outbound, ivr_upiq)",
    ),
    (
        "missing enterprise file",
        {"enterprise_src": "{tmp}/nowhere.json"},
        "cannot read {tmp}/nowhere.json: No such file or directory",
    ),
    (
        "nobody listening",
        {"enterprise_src": "http://127.0.0.1:9/manifest.json", "timeout": 2},
        "cannot fetch http://127.0.0.1:9/manifest.json: [Errno 111] Connection refused",
    ),
    (
        "zero timeout",
        {"enterprise_src": "http://127.0.0.1:9/manifest.json", "timeout": 0},
        "timeout: expected a number of seconds > 0, got 0",
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("args", "message"), [case[1:] for case in FAILURES], ids=[case[0] for case in FAILURES]
)
def test_failure_says_what_and_where(run_module, files, args, message):
    tmp = files["tmp"]
    (tmp / "downgraded.json").write_text(json.dumps(record(inbound=1002)), encoding="utf-8")
    invalid = json.loads(json.dumps(ENTERPRISE))
    invalid["modules"]["ivr_upiq"]["manifest_id"] = "3001"
    (tmp / "invalid.json").write_text(json.dumps(invalid), encoding="utf-8")
    (tmp / "damaged.json").write_text("", encoding="utf-8")
    paths = {
        "enterprise": files["enterprise"],
        "record": files["record"],
        "downgraded": str(tmp / "downgraded.json"),
        "invalid": str(tmp / "invalid.json"),
        "damaged": str(tmp / "damaged.json"),
        "tmp": str(tmp),
    }
    args = {
        key: value.format(**paths) if isinstance(value, str) else value
        for key, value in args.items()
    }

    before = tree(tmp)

    result = run_module(manifest_compare, args)

    assert (result["failed"], result["msg"]) == (True, message.format(**paths))
    assert tree(tmp) == before


def tree(root):
    """Every file under root with its bytes: a failed comparison must leave all of them."""
    return {str(path): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_the_documentation_parses_and_lists_every_option():
    doc = yaml.safe_load(manifest_compare.DOCUMENTATION)

    assert sorted(doc["options"]) == sorted(manifest_compare.ARGUMENT_SPEC)
    assert manifest_compare.ARGUMENT_SPEC["public_key"]["no_log"] is True


KEY = signing.SigningKey(b"\x41" * 32)


def test_a_signed_manifest_is_verified_and_its_key_named(run_module, files, tmp_path):
    data = (tmp_path / "dist" / "manifest.json").read_bytes()
    sig = json.dumps(signing.make_signature_file(KEY, [data]))
    (tmp_path / "dist" / "manifest.json.sig").write_text(sig, encoding="utf-8")
    args = {
        "enterprise_src": files["enterprise"],
        "public_key": signing.public_key_pem(KEY.public),
        "local_manifest": files["record"],
    }

    result = run_module(manifest_compare, args)

    assert (result["failed"], result["signed_by"]) == (False, KEY.key_id)
    assert [u["module"] for u in result["updates"]] == ["ivr_inbound", "ivr_upiq"]


def test_without_a_record_the_message_names_the_key(run_module, files, tmp_path):
    data = (tmp_path / "dist" / "manifest.json").read_bytes()
    sig = json.dumps(signing.make_signature_file(KEY, [data]))
    (tmp_path / "dist" / "manifest.json.sig").write_text(sig, encoding="utf-8")

    result = run_module(
        manifest_compare,
        {"enterprise_src": files["enterprise"], "public_key": signing.public_key_pem(KEY.public)},
    )

    assert result["msg"] == (
        f"The enterprise manifest {files['enterprise']} (signed by key {KEY.key_id}) is valid: "
        "serial 2, product 6.3.2.0, 3 modules."
    )
