"""Roll back a version that does not start or reports another version, show a check run's
plan, refuse unsafe packages.

The tests run in file order against one one-host lab (fault_kit.start_lab); each publishes its
own version of module ivr_inbound, built here with lab/make_bundle.py.
"""

import json

import pytest

from fault_kit import (
    HOST,
    MODULE,
    PROGRAM,
    installed_tree,
    publish,
    run,
    settled_problems,
    start_lab,
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, worker_base_port):
    lab = start_lab(tmp_path_factory.mktemp("rollback"), worker_base_port)
    yield lab
    lab.labctl("down", check=False)


def updater_dir(lab):
    return lab.host_dir(HOST) / "install" / ".updater"


def test_a_version_that_does_not_start_is_rolled_back_and_the_old_one_runs(lab):
    good, good_id = publish(lab, 1)
    assert run(lab)[0] == 0
    good_files = installed_tree(lab)
    bad, bad_id = publish(lab, 2, broken=True)

    rc, out, recap, _fired = run(lab, log_name="broken")

    assert rc != 0 and recap[HOST]["failed"] == 1, out
    assert f"{MODULE} (IVR Inbound) was not updated to {bad}" in out, out
    assert "refusing to start" in out and "the old files were restored" in out, out
    assert lab.service_status(HOST, "inbound")["version"] == good
    assert installed_tree(lab) == good_files
    assert lab.record(HOST)["modules"][MODULE]["manifest_id"] == good_id
    assert (updater_dir(lab) / "failed" / f"{MODULE}-{bad_id}" / "BROKEN").is_file()


def test_the_next_run_tries_again_and_rolls_back_again(lab):
    rc, out, _recap, _fired = run(lab)

    assert rc != 0 and "the old files were restored" in out, out
    assert lab.service_status(HOST, "inbound")["version"] == "6.3.2.1"
    assert not (updater_dir(lab) / "journal" / f"{MODULE}.json").exists()


def test_a_fixed_version_then_installs_and_a_second_run_changes_nothing(lab):
    version, manifest_id = publish(lab, 3, remove=["BROKEN"])

    rc, out, _recap, _fired = run(lab)

    assert rc == 0, out
    assert settled_problems(lab, version, manifest_id) == []
    pids = lab.pids()
    rc, out, recap, _fired = run(lab)
    assert (rc, recap[HOST]["changed"], lab.pids()) == (0, 0, pids), out


def test_check_mode_names_the_services_and_files_and_stops_nothing(lab):
    before = (lab.pids(), installed_tree(lab), lab.record(HOST))
    version, _manifest_id = publish(lab, 4)

    rc, out, recap, _fired = run(lab, "--check", "--diff")

    assert rc == 0 and recap[HOST]["changed"] > 0, out
    assert f"would replace 3 and remove 0 files in {lab.host_dir(HOST)}/install/IVR/Inbound" in out
    assert f"would stop {PROGRAM}; would start {PROGRAM}" in out, out
    assert "Prompts/case-4.txt" in out and "version.txt" in out, out
    assert (lab.pids(), installed_tree(lab), lab.record(HOST)) == before
    assert run(lab)[0] == 0
    assert lab.service_status(HOST, "inbound")["version"] == version


def _escaping_path(lab, manifest):
    manifest["modules"][MODULE]["files"]["../escape.txt"] = {"size": 1, "sha256": "0" * 64}
    return "../escape.txt", 'it climbs out with ".."', None


def _absolute_path(lab, manifest):
    manifest["modules"][MODULE]["files"]["/etc/evil.cfg"] = {"size": 1, "sha256": "0" * 64}
    return "/etc/evil.cfg", "it is absolute", None


def _package_symlink_out(lab, manifest):
    entry = manifest["modules"][MODULE]
    package = lab.dir / "enterprise" / "dist" / "packages" / MODULE / str(entry["manifest_id"])
    outside = lab.dir / "outside.txt"
    outside.write_text("not part of any package\n", encoding="utf-8")
    kept = (package / "version.txt").read_bytes()
    (package / "version.txt").unlink()
    (package / "version.txt").symlink_to(outside)

    def undo():
        (package / "version.txt").unlink()
        (package / "version.txt").write_bytes(kept)

    return f"{entry['manifest_id']}/version.txt", "checksum", undo


def _installed_symlink_out(lab, manifest):
    link = lab.host_dir(HOST) / "install" / "IVR" / "Inbound" / "Prompts" / "elsewhere.txt"
    link.symlink_to(lab.dir / "lab.json")
    return str(link), "outside the install root", link.unlink


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("number", "case"),
    [
        pytest.param(5, _escaping_path, id="dot-dot"),
        pytest.param(6, _absolute_path, id="absolute"),
        pytest.param(7, _package_symlink_out, id="package-symlink"),
        pytest.param(8, _installed_symlink_out, id="installed-symlink"),
    ],
)
def test_a_path_that_leaves_the_install_dir_is_refused_before_anything_stops(lab, number, case):
    publish(lab, number)
    dist_manifest = lab.dir / "enterprise" / "dist" / "manifest.json"
    kept = dist_manifest.read_text(encoding="utf-8")
    manifest = json.loads(kept)
    before = (lab.pids(), installed_tree(lab), lab.record(HOST))
    named, reason, undo = case(lab, manifest)
    dist_manifest.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    rc, out, _recap, _fired = run(lab)

    dist_manifest.write_text(kept, encoding="utf-8")
    if undo:
        undo()
    # The YAML callback folds long messages; compare the words.
    words = " ".join(out.split())
    assert rc != 0, out
    assert named in words and reason in words, out
    assert (lab.pids(), installed_tree(lab), lab.record(HOST)) == before


def test_a_version_that_reports_another_version_is_rolled_back(lab):
    good = lab.service_status(HOST, "inbound")["version"]
    good_files = installed_tree(lab)
    bad, _bad_id = publish(lab, 9, reports="6.3.9.9")

    rc, out, recap, _fired = run(lab, log_name="wrong-version")

    assert rc != 0 and recap[HOST]["failed"] == 1, out
    # The loop's own "One or more items failed" names nothing; the message names the service.
    assert (
        f"{MODULE} (IVR Inbound) was not updated to {bad}: IVR Inbound still reports 6.3.9.9 "
        "after 10 s; the old files were restored and the services started again on them."
    ) in " ".join(out.split()), out
    assert lab.service_status(HOST, "inbound")["version"] == good
    assert installed_tree(lab) == good_files
