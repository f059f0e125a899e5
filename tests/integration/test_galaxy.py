"""The collection as Galaxy ships it: built, installed, and run by its FQCN from the install.

The tarball is the one `make galaxy` built (PRAIRIEFYRE_COLLECTION_TARBALL), or one this module
builds from the checkout. It is installed into a temporary collections path, and the playbooks
run from there with a configuration that knows no other copy of the collection: not the
checkout's link in .build/collections, not ~/.ansible/collections.
"""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SAMPLE = REPO / "lab" / "patches" / "sample-6.3.2"
HOSTS = ("ivr01", "ivr02")

# Top-level entries that are lab state, virtual environments, build output, caches or CI glue.
FORBIDDEN_TOP = {".lab", ".build", ".cache", ".pytest_cache", ".ruff_cache", ".mypy_cache"}
FORBIDDEN_TOP |= {".ansible", ".git", ".ci", "bench"}


def run(*cmd, env=None, cwd=None):
    proc = subprocess.run(
        [str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, f"{cmd}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def shipped(directory):
    """The files under a directory of the checkout that the tarball must hold."""
    return sorted(
        str(p.relative_to(REPO))
        for p in (REPO / directory).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    given = os.environ.get("PRAIRIEFYRE_COLLECTION_TARBALL")
    if given:
        return Path(given)

    dist = tmp_path_factory.mktemp("dist")
    run(BIN / "ansible-galaxy", "collection", "build", "--output-path", dist, REPO)
    (built,) = dist.glob("prairiefyre-updater-*.tar.gz")
    return built


@pytest.fixture(scope="module")
def members(tarball):
    with tarfile.open(tarball) as tar:
        return tar.getnames()


@pytest.fixture(scope="module")
def installed(tarball, tmp_path_factory):
    """A collections path holding only the installed tarball, and a config that uses it.

    The install gets the same environment as the runs: ansible-galaxy skips a collection it
    finds already installed in any configured path, ~/.ansible/collections included.
    """
    root = tmp_path_factory.mktemp("installed")
    collections = root / "collections"
    config = root / "ansible.cfg"
    config.write_text(
        "[defaults]\n"
        f"collections_path = {collections}\n"
        "callbacks_enabled = prairiefyre.updater.gate_progress\n"
        "callback_result_format = yaml\n"
        "interpreter_python = auto_silent\n"
        "retry_files_enabled = false\n",
        encoding="utf-8",
    )
    env = {
        "ANSIBLE_CONFIG": str(config),
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_HOME": str(root / "ansible-home"),
    }
    run(
        BIN / "ansible-galaxy",
        "collection",
        "install",
        "--offline",
        "-p",
        collections,
        tarball,
        env={**os.environ, **env},
        cwd=root,
    )
    return {"root": root, "collections": collections, "env": env}


def test_the_tarball_names_the_collection_of_galaxy_yml(members, tarball):
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text(encoding="utf-8"))
    with tarfile.open(tarball) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))

    info = manifest["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == (
        galaxy["namespace"],
        galaxy["name"],
        galaxy["version"],
    )
    assert tarball.name == f"prairiefyre-updater-{galaxy['version']}.tar.gz"


@pytest.mark.parametrize("directory", ["plugins", "roles", "playbooks", "meta"])
def test_the_tarball_holds_every_file_of(members, directory):
    assert set(shipped(directory)) - set(members) == set()


def test_the_tarball_holds_no_lab_state_venv_build_output_or_cache(members):
    def unwanted(name):
        parts = Path(name).parts
        return (
            parts[0] in FORBIDDEN_TOP
            or parts[0].startswith(".venv")
            or name.startswith("tests/output")
            or "__pycache__" in parts
            or name.endswith((".pyc", ".tar.gz"))
        )

    assert [name for name in members if unwanted(name)] == []


def test_the_installed_copy_is_the_only_one_ansible_finds(installed):
    out = run(
        BIN / "ansible-galaxy",
        "collection",
        "list",
        "prairiefyre.updater",
        "--format",
        "json",
        env={**os.environ, **installed["env"]},
        cwd=installed["root"],
    )

    found = json.loads(out)
    assert list(found) == [str(installed["collections"] / "ansible_collections")]
    copy = installed["collections"] / "ansible_collections" / "prairiefyre" / "updater"
    assert not copy.is_symlink()
    assert (copy / "playbooks" / "update_ivr.yml").is_file()


def test_the_installed_apply_patch_playbook_patches_the_lab(lab, installed):
    rc, out, recap = lab.run_playbook(
        "prairiefyre.updater.apply_patch",
        "-e",
        f"enterprise_patch_bundle={SAMPLE}",
        env=installed["env"],
        cwd=installed["root"],
    )

    assert rc == 0, out
    assert recap["enterprise-lab"]["changed"] == 1, out


def test_the_installed_update_playbook_updates_every_host(lab, installed):
    rc, out, recap = lab.run_playbook(
        "prairiefyre.updater.update_ivr", env=installed["env"], cwd=installed["root"]
    )

    assert rc == 0, out
    assert {h: recap[h]["failed"] for h in HOSTS} == {"ivr01": 0, "ivr02": 0}, out
    assert all(recap[h]["changed"] > 0 for h in HOSTS), out
    for host in HOSTS:
        ids = {m: spec["manifest_id"] for m, spec in lab.record(host)["modules"].items()}
        assert ids == {"ivr_inbound": 1001, "ivr_outbound": 2000, "ivr_upiq": 3001}, host


def test_the_installed_verify_playbook_passes(lab, installed):
    rc, out, recap = lab.run_playbook(
        "prairiefyre.updater.verify_ivr", env=installed["env"], cwd=installed["root"]
    )

    assert rc == 0, out
    assert {h: recap[h]["failed"] for h in HOSTS} == {"ivr01": 0, "ivr02": 0}, out
    assert (
        "ivr01: IVR Inbound runs 6.3.2.0, the version the enterprise ships for its module."
        in " ".join(out.split())
    ), out
