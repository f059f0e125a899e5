# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the updater_log and updater_log_info modules.

The writer runs in the order of an integration step: check mode, real run, idempotent run,
idempotent check mode, each asserting changed and the exact message.
"""

import codecs
import time

import pytest
import yaml

from ansible_collections.prairiefyre.updater.plugins.modules import updater_log, updater_log_info

LINE_6320 = (
    "Info      12/4/2026 3:00:00 PM     Loaded PostTask: Assembly prairieFyre.Updater.Tasks, "
    "Version=6.3.2.0, Culture=neutral, PublicKeyToken=null"
)


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    """The log holds local times; pin the zone so that Z and offsets convert predictably."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("module", [updater_log, updater_log_info])
def test_documentation_agrees_with_the_argument_spec(module):
    options = yaml.safe_load(module.DOCUMENTATION)["options"]

    assert sorted(options) == sorted(module.ARGUMENT_SPEC)
    for name, spec in module.ARGUMENT_SPEC.items():
        doc = options[name]
        assert doc["type"] == spec["type"], name
        assert doc.get("default") == spec.get("default"), name
        assert doc.get("choices") == spec.get("choices"), name
        assert doc.get("required", False) == spec.get("required", False), name


def test_updater_log_check_run_idempotent_run_and_check(run_module, tmp_path):
    path = tmp_path / "CCM" / "Logs" / "UpdaterService.log"
    options = {"path": str(path), "version": "6.3.2.0", "timestamp": "2026-12-04T15:00:00Z"}

    checked = run_module(updater_log, options, check_mode=True, diff=True)
    assert (checked["changed"], checked["msg"]) == (
        True,
        f"would append the PostTask line for version 6.3.2.0 to {path}",
    )
    assert checked["diff"] == {
        "before_header": str(path),
        "after_header": str(path),
        "before": "",
        "after": LINE_6320 + "\n",
    }
    assert not path.exists()

    written = run_module(updater_log, options, diff=True)
    assert (written["changed"], written["line"], written["encoding"]) == (
        True,
        LINE_6320,
        "utf-8-sig",
    )
    assert written["msg"] == f"appended the PostTask line for version 6.3.2.0 to {path}"
    assert path.read_bytes() == codecs.BOM_UTF8 + (LINE_6320 + "\r\n").encode()

    again = run_module(updater_log, dict(options, timestamp="2026-12-05T08:00:00"))
    assert (again["changed"], again["msg"], again["line"]) == (
        False,
        f"{path} already records the PostTask for version 6.3.2.0",
        LINE_6320,
    )
    assert "diff" not in again

    again_checked = run_module(updater_log, options, check_mode=True, diff=True)
    assert again_checked["changed"] is False
    assert path.read_bytes() == codecs.BOM_UTF8 + (LINE_6320 + "\r\n").encode()


def test_updater_log_since_writes_the_same_version_again(run_module, tmp_path):
    path = tmp_path / "UpdaterService.log"
    path.write_bytes(codecs.BOM_UTF16_LE + (LINE_6320 + "\r\n").encode("utf-16-le"))

    result = run_module(
        updater_log,
        {
            "path": str(tmp_path),
            "version": "6.3.2.0",
            "timestamp": "2026-12-05T09:30:05",
            "since": "2026-12-05T09:00:00",
        },
    )

    assert (result["changed"], result["encoding"]) == (True, "utf-16-le")
    assert result["previous"]["timestamp"] == "2026-12-04T15:00:00"
    assert path.read_bytes().decode("utf-16-le").splitlines()[-1] == (
        "Info      12/5/2026 9:30:05 AM     Loaded PostTask: Assembly prairieFyre.Updater.Tasks, "
        "Version=6.3.2.0, Culture=neutral, PublicKeyToken=null"
    )


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"timestamp": "4 Dec 2026"},
            'timestamp: expected an ISO 8601 date and time, got "4 Dec 2026"',
        ),
        ({"since": "soon"}, 'since: expected an ISO 8601 date and time, got "soon"'),
        (
            {"version": "6.3.2.0, Culture=evil"},
            "version: expected a non-empty value without comma, space or line break for the "
            'PostTask line, got "6.3.2.0, Culture=evil"',
        ),
        (
            {"level": "Fatal"},
            "value of level must be one of: Info, Warning, Error, Debug, got: Fatal",
        ),
    ],
)
def test_updater_log_bad_input(run_module, tmp_path, changes, message):
    options = dict({"path": str(tmp_path / "UpdaterService.log"), "version": "6.3.2.0"}, **changes)

    result = run_module(updater_log, options)

    assert (result["failed"], result["msg"]) == (True, message)
    assert not (tmp_path / "UpdaterService.log").exists()


def write_logs(logs):
    logs.mkdir()
    (logs / "UpdaterService.log.1").write_bytes(
        codecs.BOM_UTF8
        + (
            "Info      11/2/2026 9:12:40 AM     Loaded PostTask: Assembly "
            "prairieFyre.Updater.Tasks, Version=6.3.1.0, Culture=neutral, PublicKeyToken=null\r\n"
        ).encode()
    )
    (logs / "UpdaterService.log").write_bytes(
        codecs.BOM_UTF16_LE
        + (
            "Info      12/4/2026 2:59:00 PM     Updater Service starting\r\n"
            "   at nothing in particular\r\n" + LINE_6320 + "\r\n"
        ).encode("utf-16-le")
    )


INFO_CASES = [
    pytest.param(None, None, id="no-since"),
    pytest.param("2026-12-04T15:00:00", True, id="since-equal"),
    pytest.param("2026-12-04T14:00:00Z", True, id="since-before"),
    pytest.param("2026-12-04T10:00:01-05:00", False, id="since-after-with-offset"),
]


@pytest.mark.parametrize(("since", "after"), INFO_CASES)
def test_updater_log_info_reads_a_logs_directory(run_module, tmp_path, since, after):
    logs = tmp_path / "Logs"
    write_logs(logs)
    options = {"path": str(logs)} if since is None else {"path": str(logs), "since": since}

    result = run_module(updater_log_info, options, check_mode=True)

    assert result["changed"] is False
    assert result["msg"] == f"last PostTask in {logs} is version 6.3.2.0 at 2026-12-04T15:00:00"
    assert result["post_task"] == {
        "version": "6.3.2.0",
        "assembly": "prairieFyre.Updater.Tasks",
        "timestamp": "2026-12-04T15:00:00",
        "line": LINE_6320,
        "file": str(logs / "UpdaterService.log"),
    }
    assert [p["version"] for p in result["post_tasks"]] == ["6.3.1.0", "6.3.2.0"]
    assert (result["entries"], result["skipped_lines"]) == (3, 1)
    assert result["files"] == [str(logs / "UpdaterService.log.1"), str(logs / "UpdaterService.log")]
    assert result.get("post_task_after_since") == after


def test_updater_log_info_without_post_task(run_module, tmp_path):
    (tmp_path / "UpdaterService.log").write_bytes(b"Info 12/4/2026 2:59:00 PM started\n")

    result = run_module(updater_log_info, {"path": str(tmp_path), "since": "2026-01-01T00:00:00"})

    assert (result["post_task"], result["post_task_after_since"]) == (None, False)
    assert result["msg"] == f"no loaded PostTask in {tmp_path}"


@pytest.mark.bad_input
def test_updater_log_info_missing_path(run_module, tmp_path):
    result = run_module(updater_log_info, {"path": str(tmp_path / "Logs")})

    assert (result["failed"], result["msg"]) == (
        True,
        f"updater log {tmp_path / 'Logs'} does not exist",
    )
