# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of module_utils/updater_log.py: the PostTask line, the reader and the writer.

Encoded logs are built here byte by byte from readable text (the shared sample lives in
tests/unit/fixtures/logs/mixed_formats.txt), so every BOM and line break is exactly what the
case says.
"""

import codecs
import datetime
import os
import time
from pathlib import Path

import pytest

from ansible_collections.prairiefyre.updater.plugins.module_utils import updater_log
from ansible_collections.prairiefyre.updater.plugins.module_utils.updater_log import LogError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "logs"
SEED_LINE = (
    "Info      2/8/2013 11:44:51 AM     Loaded PostTask: Assembly prairieFyre.Updater.Tasks, "
    "Version=6.3.2.0, Culture=neutral, PublicKeyToken=null"
)


def post_task_line(version, stamp="2/8/2013 11:44:51 AM", level="Info      "):
    return (
        f"{level}{stamp}     Loaded PostTask: Assembly prairieFyre.Updater.Tasks, "
        f"Version={version}, Culture=neutral, PublicKeyToken=null"
    )


def encode_log(lines, codec, newline="\r\n", bom=b""):
    return bom + "".join(line + newline for line in lines).encode(codec)


@pytest.fixture
def utc(monkeypatch):
    """Run with the host's local time zone set to UTC, so offsets convert predictably."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# --- the line --------------------------------------------------------------------------------

FORMAT_CASES = [
    pytest.param(datetime.datetime(2013, 2, 8, 11, 44, 51), "Info", SEED_LINE, id="seed"),
    pytest.param(
        datetime.datetime(2026, 12, 31, 0, 5, 9),
        "Info",
        post_task_line("6.3.2.0", "12/31/2026 12:05:09 AM"),
        id="just-after-midnight",
    ),
    pytest.param(
        datetime.datetime(2026, 1, 1, 12, 0, 0),
        "Info",
        post_task_line("6.3.2.0", "1/1/2026 12:00:00 PM"),
        id="noon",
    ),
    pytest.param(
        datetime.datetime(2026, 7, 4, 23, 59, 59, 999999),
        "Info",
        post_task_line("6.3.2.0", "7/4/2026 11:59:59 PM"),
        id="last-second-microseconds-dropped",
    ),
    pytest.param(
        datetime.datetime(2013, 2, 8, 11, 44, 51),
        "Warning",
        post_task_line("6.3.2.0", level="Warning   "),
        id="warning-padded",
    ),
    pytest.param(
        datetime.datetime(2013, 2, 8, 11, 44, 51),
        "Informational",
        post_task_line("6.3.2.0", level="Informational "),
        id="level-longer-than-field",
    ),
]


@pytest.mark.parametrize(("when", "level", "expected"), FORMAT_CASES)
def test_format_post_task(when, level, expected):
    assert updater_log.format_post_task("6.3.2.0", when, level=level) == expected


PARSE_LINE_CASES = [
    pytest.param(
        SEED_LINE,
        ("Info", datetime.datetime(2013, 2, 8, 11, 44, 51), "6.3.2.0"),
        id="seed",
    ),
    pytest.param(
        "Info      2/8/2013 12:44:51 AM     Loaded PostTask: Assembly A.B, Version=1, C",
        ("Info", datetime.datetime(2013, 2, 8, 0, 44, 51), "1"),
        id="12-am-is-midnight",
    ),
    pytest.param(
        "Info 2/8/2013 14:44:51 started",
        ("Info", datetime.datetime(2013, 2, 8, 14, 44, 51), None),
        id="us-date-24-hour-clock",
    ),
    pytest.param(
        "2013-02-08 11:44:51.123 INFO Loaded PostTask: Assembly X, Version=2.0",
        ("INFO", datetime.datetime(2013, 2, 8, 11, 44, 51, 123000), "2.0"),
        id="iso-space-millis-stamp-first",
    ),
    pytest.param(
        "Debug 2013-02-08T11:44:51.1234567 trace",
        ("Debug", datetime.datetime(2013, 2, 8, 11, 44, 51, 123456), None),
        id="iso-seven-fraction-digits",
    ),
    pytest.param(
        "08.02.2013 11:44:51 [Warning] - disk almost full",
        ("Warning", datetime.datetime(2013, 2, 8, 11, 44, 51), None),
        id="dotted-day-first",
    ),
    pytest.param(
        "2013-02-08T11:44:51Z Info moved",
        ("Info", datetime.datetime(2013, 2, 8, 11, 44, 51), None),
        id="iso-utc-in-utc-zone",
    ),
    pytest.param(
        "2013-02-08T11:44:51+0100 Info moved",
        ("Info", datetime.datetime(2013, 2, 8, 10, 44, 51), None),
        id="iso-offset-without-colon",
    ),
    pytest.param("   at prairieFyre.Updater.Run()", None, id="stack-trace"),
    pytest.param("=========", None, id="banner"),
    pytest.param("Info      2/30/2013 1:00:00 PM     no such day", None, id="impossible-date"),
    pytest.param("Info      2/8/2013 13:00:00 PM     13 PM", None, id="impossible-hour"),
    pytest.param("", None, id="empty"),
]


@pytest.mark.usefixtures("utc")
@pytest.mark.parametrize(("line", "expected"), PARSE_LINE_CASES)
def test_parse_line(line, expected):
    entry = updater_log.parse_line(line)

    if expected is None:
        assert entry is None
        return
    level, when, version = expected
    assert (entry["level"], entry["time"]) == (level, when)
    post_task = updater_log.parse_post_task(entry["message"])
    assert (post_task and post_task["version"]) == version


PARSE_ISO_CASES = [
    ("2026-12-04T15:00:00", datetime.datetime(2026, 12, 4, 15, 0, 0)),
    ("2026-12-04 15:00:00", datetime.datetime(2026, 12, 4, 15, 0, 0)),
    ("2026-12-04T15:00:00.5", datetime.datetime(2026, 12, 4, 15, 0, 0, 500000)),
    ("2026-12-04T15:00:00Z", datetime.datetime(2026, 12, 4, 15, 0, 0)),
    ("2026-12-04T15:00:00-05:00", datetime.datetime(2026, 12, 4, 20, 0, 0)),
    ("2026-12-04", datetime.datetime(2026, 12, 4, 0, 0, 0)),
]


@pytest.mark.usefixtures("utc")
@pytest.mark.parametrize(("text", "expected"), PARSE_ISO_CASES)
def test_parse_iso(text, expected):
    assert updater_log.parse_iso(text) == expected


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("yesterday", 'since: expected an ISO 8601 date and time, got "yesterday"'),
        (
            "2/8/2013 11:44:51 AM",
            'since: expected an ISO 8601 date and time, got "2/8/2013 11:44:51 AM"',
        ),
        (
            "2026-13-01T00:00:00",
            'since: expected an ISO 8601 date and time, got "2026-13-01T00:00:00"',
        ),
    ],
)
def test_parse_iso_refuses(text, message):
    with pytest.raises(LogError) as caught:
        updater_log.parse_iso(text, "since")

    assert str(caught.value) == message
    assert caught.value.context == {"field": "since", "value": text}


DETECT_CASES = [
    (codecs.BOM_UTF8 + b"Info", ("utf-8-sig", 3)),
    (codecs.BOM_UTF16_LE + "Info".encode("utf-16-le"), ("utf-16-le", 2)),
    (codecs.BOM_UTF16_BE + "Info".encode("utf-16-be"), ("utf-16-be", 2)),
    ("Info".encode("utf-16-le"), ("utf-16-le", 0)),
    ("Info".encode("utf-16-be"), ("utf-16-be", 0)),
    (b"Info", ("utf-8", 0)),
    (b"", ("utf-8", 0)),
]


@pytest.mark.parametrize(("head", "expected"), DETECT_CASES)
def test_detect_encoding(head, expected):
    assert updater_log.detect_encoding(head) == expected


# --- reading ---------------------------------------------------------------------------------

SAMPLE_LINES = (FIXTURES / "mixed_formats.txt").read_text(encoding="utf-8").splitlines()

# What the sample gives in every encoding: 9 entries, 4 skipped lines (a stack trace of two
# lines, a banner and an impossible date), and three PostTasks, the middle one without version.
SAMPLE_POST_TASKS = [
    ("6.3.1.0", "2013-02-08T11:44:51"),
    ("", "2013-02-08T13:15:00"),
    ("6.3.2.0", "2013-02-08T13:20:00.500000"),
]

READ_CASES = [
    pytest.param("utf-8", "\r\n", codecs.BOM_UTF8, id="utf8-bom-crlf"),
    pytest.param("utf-8", "\n", b"", id="utf8-lf"),
    pytest.param("utf-16-le", "\r\n", codecs.BOM_UTF16_LE, id="utf16le-bom-crlf"),
    pytest.param("utf-16-be", "\r\n", codecs.BOM_UTF16_BE, id="utf16be-bom-crlf"),
    pytest.param("utf-16-le", "\n", b"", id="utf16le-no-bom-lf"),
    pytest.param("cp1252", "\r\n", b"", id="cp1252-crlf"),
]


@pytest.mark.usefixtures("utc")
@pytest.mark.parametrize(("codec", "newline", "bom"), READ_CASES)
def test_read_log_encodings(tmp_path, codec, newline, bom):
    path = tmp_path / "UpdaterService.log"
    path.write_bytes(encode_log(SAMPLE_LINES, codec, newline, bom))

    result = updater_log.read_log(str(path))

    assert (result["entries"], result["skipped_lines"]) == (9, 4)
    assert [(p["version"], p["timestamp"]) for p in result["post_tasks"]] == SAMPLE_POST_TASKS
    assert result["post_task"] == {
        "version": "6.3.2.0",
        "assembly": "prairieFyre.Updater.Tasks",
        "timestamp": "2013-02-08T13:20:00.500000",
        "line": SAMPLE_LINES[-1],
        "file": str(path),
    }
    assert result["files"] == [str(path)]


def test_read_log_legacy_bytes_per_line(tmp_path):
    """One cp1252 line in a UTF-8 file is read as cp1252; the other lines stay UTF-8."""
    path = tmp_path / "UpdaterService.log"
    path.write_bytes(
        "Info      2/8/2013 11:00:00 AM     Caf\u00e9 opened\r\n".encode("cp1252")
        + encode_log([post_task_line("6.3.2.0 \u2713")], "utf-8")
    )

    result = updater_log.read_log(str(path))

    assert result["entries"] == 2
    assert result["post_task"]["version"] == "6.3.2.0"
    assert result["post_task"]["line"].endswith("\u2713, Culture=neutral, PublicKeyToken=null")


def test_read_log_history_keeps_the_last_five(tmp_path):
    path = tmp_path / "UpdaterService.log"
    path.write_bytes(
        encode_log(
            [post_task_line(f"6.3.{n}.0", f"2/{n}/2013 9:00:00 AM") for n in range(1, 9)], "utf-8"
        )
    )

    result = updater_log.read_log(str(path))

    assert [p["version"] for p in result["post_tasks"]] == [f"6.3.{n}.0" for n in range(4, 9)]


def make_rotated_set(logs):
    """A Logs directory with every rotation pattern; one PostTask per file, named after it."""
    files = {
        "UpdaterService_2013-02-01.log": ("utf-8", codecs.BOM_UTF8, "2/1/2013 8:00:00 AM"),
        "UpdaterService_20130203.log": ("utf-8", b"", "2/3/2013 8:00:00 AM"),
        "UpdaterService.log.2": ("utf-16-le", codecs.BOM_UTF16_LE, "2/4/2013 8:00:00 AM"),
        "UpdaterService.2.log": ("utf-8", b"", "2/5/2013 8:00:00 AM"),
        "updaterservice.log.1": ("utf-8", b"", "2/6/2013 8:00:00 AM"),
        "UpdaterService.log": ("utf-16-le", codecs.BOM_UTF16_LE, "2/8/2013 8:00:00 AM"),
        "Other.log": ("utf-8", b"", "2/9/2013 8:00:00 AM"),
        "UpdaterService.log.gz": ("utf-8", b"", "2/9/2013 8:00:00 AM"),
    }
    logs.mkdir(exist_ok=True)
    for name, (codec, bom, stamp) in files.items():
        (logs / name).write_bytes(encode_log([post_task_line(name, stamp)], codec, bom=bom))


ROTATED_ORDER = [
    "UpdaterService_2013-02-01.log",
    "UpdaterService_20130203.log",
    "UpdaterService.2.log",
    "UpdaterService.log.2",
    "updaterservice.log.1",
    "UpdaterService.log",
]


def test_read_log_directory_reads_rotated_files_oldest_first(tmp_path):
    logs = tmp_path / "Logs"
    make_rotated_set(logs)

    result = updater_log.read_log(str(logs))

    assert result["files"] == [str(logs / name) for name in ROTATED_ORDER]
    assert result["entries"] == 6
    assert [p["version"] for p in result["post_tasks"]] == ROTATED_ORDER[1:]
    assert result["post_task"]["file"] == str(logs / "UpdaterService.log")


def test_read_log_directory_without_post_task_in_current_file(tmp_path):
    logs = tmp_path / "Logs"
    make_rotated_set(logs)
    (logs / "UpdaterService.log").write_bytes(
        encode_log(["Info      2/8/2013 9:00:00 AM     Service started"], "utf-8")
    )

    result = updater_log.read_log(str(logs))

    assert result["post_task"]["version"] == "updaterservice.log.1"


def test_read_log_empty_directory(tmp_path):
    assert updater_log.read_log(str(tmp_path)) == {
        "files": [],
        "entries": 0,
        "skipped_lines": 0,
        "post_task": None,
        "post_tasks": [],
    }


@pytest.mark.bad_input
def test_read_log_missing_path(tmp_path):
    missing = tmp_path / "Logs"

    with pytest.raises(LogError) as caught:
        updater_log.read_log(str(missing))

    assert str(caught.value) == f"updater log {missing} does not exist"


# --- writing ---------------------------------------------------------------------------------

WHEN = datetime.datetime(2026, 12, 4, 15, 0, 0)
NEW_LINE = post_task_line("6.3.2.0", "12/4/2026 3:00:00 PM")
OLD_LINES = ["Info      12/1/2026 9:00:00 AM     Service started", post_task_line("6.3.1.0")]

WRITE_CASES = [
    pytest.param(None, b"", "utf-8-sig", codecs.BOM_UTF8 + (NEW_LINE + "\r\n").encode(), id="new"),
    pytest.param(b"", b"", "utf-8-sig", codecs.BOM_UTF8 + (NEW_LINE + "\r\n").encode(), id="empty"),
    pytest.param(
        encode_log(OLD_LINES, "utf-8", bom=codecs.BOM_UTF8),
        (NEW_LINE + "\r\n").encode("utf-8"),
        "utf-8-sig",
        None,
        id="utf8-bom",
    ),
    pytest.param(
        encode_log(OLD_LINES, "utf-8", newline="\n"),
        (NEW_LINE + "\r\n").encode("utf-8"),
        "utf-8",
        None,
        id="utf8-lf",
    ),
    pytest.param(
        encode_log(OLD_LINES, "utf-16-le", bom=codecs.BOM_UTF16_LE),
        (NEW_LINE + "\r\n").encode("utf-16-le"),
        "utf-16-le",
        None,
        id="utf16le-bom",
    ),
    pytest.param(
        encode_log(OLD_LINES, "utf-16-be", bom=codecs.BOM_UTF16_BE),
        (NEW_LINE + "\r\n").encode("utf-16-be"),
        "utf-16-be",
        None,
        id="utf16be-bom",
    ),
    pytest.param(
        encode_log(OLD_LINES, "utf-16-le", bom=codecs.BOM_UTF16_LE)[:-4],
        ("\r\n" + NEW_LINE + "\r\n").encode("utf-16-le"),
        "utf-16-le",
        None,
        id="utf16le-unterminated-last-line",
    ),
    pytest.param(
        b"\xef\xbb\xbfInfo      12/1/2026 9:00:00 AM     half a line",
        ("\r\n" + NEW_LINE + "\r\n").encode("utf-8"),
        "utf-8-sig",
        None,
        id="utf8-unterminated-last-line",
    ),
]


@pytest.mark.parametrize(("before", "appended", "encoding", "whole"), WRITE_CASES)
def test_write_post_task_appends_in_the_file_encoding(tmp_path, before, appended, encoding, whole):
    path = tmp_path / "CCM" / "Logs" / "UpdaterService.log"
    if before is not None:
        path.parent.mkdir(parents=True)
        path.write_bytes(before)

    result = updater_log.write_post_task(str(path), "6.3.2.0", when=WHEN)

    assert result["changed"] is True
    assert (result["line"], result["encoding"], result["path"]) == (NEW_LINE, encoding, str(path))
    assert path.read_bytes() == (whole if whole is not None else before + appended)
    assert updater_log.read_log(str(path))["post_task"]["version"] == "6.3.2.0"


@pytest.mark.parametrize(
    ("given", "written"),
    [
        pytest.param("Logs", "Logs/UpdaterService.log", id="existing-directory"),
        pytest.param("CCM/Logs", "CCM/Logs/UpdaterService.log", id="missing-directory"),
        pytest.param("CCM/Logs/Custom.LOG", "CCM/Logs/Custom.LOG", id="missing-file"),
        pytest.param("Logs/notes", "Logs/notes", id="existing-file-without-suffix"),
    ],
)
def test_write_post_task_resolves_the_path(tmp_path, given, written):
    (tmp_path / "Logs").mkdir()
    (tmp_path / "Logs" / "notes").write_bytes(b"")

    result = updater_log.write_post_task(str(tmp_path / given), "6.3.2.0", when=WHEN)

    assert result["path"] == str(tmp_path / written)
    assert (tmp_path / written).read_bytes() == codecs.BOM_UTF8 + (NEW_LINE + "\r\n").encode()


IDEMPOTENT_CASES = [
    pytest.param("6.3.2.0", None, False, id="same-version"),
    pytest.param("6.3.2.0", datetime.datetime(2026, 12, 4, 15, 0, 0), False, id="since-equal"),
    pytest.param("6.3.2.0", datetime.datetime(2026, 12, 4, 15, 0, 1), True, id="since-newer"),
    pytest.param("6.3.3.0", None, True, id="other-version"),
]


@pytest.mark.parametrize(("version", "since", "changed"), IDEMPOTENT_CASES)
def test_write_post_task_idempotence(tmp_path, version, since, changed):
    path = tmp_path / "UpdaterService.log"
    path.write_bytes(encode_log(OLD_LINES + [NEW_LINE], "utf-16-le", bom=codecs.BOM_UTF16_LE))
    before = path.read_bytes()

    later = datetime.datetime(2026, 12, 5, 8, 0, 0)
    result = updater_log.write_post_task(str(path), version, when=later, since=since)

    assert result["changed"] is changed
    assert result["previous"]["line"] == NEW_LINE
    if changed:
        assert path.read_bytes() == before + (result["line"] + "\r\n").encode("utf-16-le")
    else:
        assert (result["line"], path.read_bytes()) == (NEW_LINE, before)


def test_write_post_task_check_mode_writes_nothing(tmp_path):
    path = tmp_path / "Logs" / "UpdaterService.log"

    result = updater_log.write_post_task(str(path), "6.3.2.0", when=WHEN, check=True)

    assert (result["changed"], result["line"], result["encoding"]) == (True, NEW_LINE, "utf-8-sig")
    assert not os.path.exists(path.parent)


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("version", "assembly", "message"),
    [
        (
            "",
            "A",
            "version: expected a non-empty value without comma, space or line break for the "
            'PostTask line, got ""',
        ),
        (
            "6.3, 2",
            "A",
            "version: expected a non-empty value without comma, space or line break for the "
            'PostTask line, got "6.3, 2"',
        ),
        (
            "6.3.2.0",
            "A\r\nInfo",
            "assembly: expected a non-empty value without comma, space or line break for the "
            'PostTask line, got "A\\r\\nInfo"',
        ),
    ],
)
def test_write_post_task_refuses_values_that_break_the_line(tmp_path, version, assembly, message):
    with pytest.raises(LogError) as caught:
        updater_log.write_post_task(str(tmp_path / "x.log"), version, assembly=assembly)

    assert str(caught.value) == message
    assert not (tmp_path / "x.log").exists()


@pytest.mark.bad_input
def test_write_post_task_unwritable_directory(tmp_path):
    blocker = tmp_path / "Logs"
    blocker.write_text("a file where the directory should be")
    path = blocker / "UpdaterService.log"

    with pytest.raises(LogError) as caught:
        updater_log.write_post_task(str(path), "6.3.2.0", when=WHEN)

    assert str(caught.value) == f"cannot read the updater log {path}: Not a directory"
