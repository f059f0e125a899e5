# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""UpdaterService.log as Windows services leave it, read for the last loaded PostTask.

test_updater_log.py covers the formats one by one; this table covers what a real Logs
directory holds: mixed line ends, a BOM written again in the middle of a file, the NUL bytes
NTFS leaves after a crash, a file cut off while a service wrote it, clocks turned back. Each
case is built byte by byte and names the PostTask that must come out.
"""

import codecs

import pytest

from ansible_collections.prairiefyre.updater.plugins.module_utils import updater_log

STARTING = "Info      12/4/2026 3:40:02 PM     Updater Service starting"
OLD = (
    "Info      11/2/2026 9:12:40 AM     Loaded PostTask: Assembly prairieFyre.Updater.Tasks, "
    "Version=6.3.1.0, Culture=neutral, PublicKeyToken=null"
)
NEW = (
    "Info      12/4/2026 3:44:51 PM     Loaded PostTask: Assembly prairieFyre.Updater.Tasks, "
    "Version=6.3.2.0, Culture=neutral, PublicKeyToken=null"
)
OLD_TASK = ("6.3.1.0", "2026-11-02T09:12:40")
NEW_TASK = ("6.3.2.0", "2026-12-04T15:44:51")

UTF16 = "utf-16-le"
BOM8 = codecs.BOM_UTF8
BOM16 = codecs.BOM_UTF16_LE


def text(*lines, end="\r\n"):
    return "".join(line + end for line in lines)


CASES = [
    pytest.param(
        BOM8 + text(STARTING, OLD, NEW, end="\n").encode(), 3, 0, NEW_TASK, id="utf8-bom-lf"
    ),
    pytest.param(
        BOM16 + text(STARTING, OLD, NEW, end="\n").encode(UTF16), 3, 0, NEW_TASK, id="utf16-bom-lf"
    ),
    pytest.param(
        text(STARTING, OLD, NEW).encode("utf-16-be"), 3, 0, NEW_TASK, id="utf16be-no-bom-crlf"
    ),
    pytest.param(
        BOM16 + (text(STARTING, OLD) + NEW).encode(UTF16),
        3,
        0,
        NEW_TASK,
        id="utf16-last-line-unterminated",
    ),
    pytest.param(
        BOM8 + (STARTING + "\r\n" + OLD + "\n" + NEW + "\r\n").encode(),
        3,
        0,
        NEW_TASK,
        id="crlf-and-lf-mixed",
    ),
    pytest.param(text(STARTING, OLD, NEW, end="\r").encode(), 3, 0, NEW_TASK, id="lone-cr"),
    pytest.param(
        BOM8 + text(STARTING, OLD).encode() + BOM8 + text(NEW).encode(),
        3,
        0,
        NEW_TASK,
        id="utf8-bom-again-mid-file",
    ),
    pytest.param(
        BOM16 + text(STARTING, OLD).encode(UTF16) + BOM16 + text(NEW).encode(UTF16),
        3,
        0,
        NEW_TASK,
        id="utf16-bom-again-mid-file",
    ),
    pytest.param(
        BOM8 + text(STARTING, OLD).encode() + b"\0" * 4096 + text(NEW).encode(),
        3,
        0,
        NEW_TASK,
        id="utf8-nul-block-after-crash",
    ),
    pytest.param(
        BOM16 + text(STARTING, OLD).encode(UTF16) + b"\0" * 512 + text(NEW).encode(UTF16),
        3,
        0,
        NEW_TASK,
        id="utf16-nul-block-after-crash",
    ),
    pytest.param(
        BOM8 + text(STARTING, OLD).encode() + b"\0" * 512,
        2,
        0,
        OLD_TASK,
        id="nul-tail-without-new-line",
    ),
    pytest.param(
        BOM16 + text(STARTING, OLD).encode(UTF16) + NEW.encode(UTF16)[:-1],
        3,
        0,
        ("6.3.2.0", "2026-12-04T15:44:51"),
        id="utf16-cut-mid-character",
    ),
    pytest.param(
        BOM8
        + text(
            NEW, "Info      12/4/2026 3:30:00 PM     clock set back by the time service"
        ).encode()
        + text(OLD.replace("11/2/2026 9:12:40 AM", "12/4/2026 3:31:00 PM")).encode(),
        3,
        0,
        ("6.3.1.0", "2026-12-04T15:31:00"),
        id="clock-set-back-last-line-wins",
    ),
    pytest.param(
        BOM8 + text(OLD, "   at prairieFyre.Updater.Swap()", "", "   ", NEW).encode(),
        2,
        1,
        NEW_TASK,
        id="stack-trace-and-blank-lines",
    ),
    pytest.param(
        text(STARTING, OLD).encode("cp1252")
        + "Info      12/4/2026 3:44:00 PM     Ü\r\n".encode("cp1252")
        + text(NEW).encode(),
        4,
        0,
        NEW_TASK,
        id="cp1252-line-among-utf8",
    ),
]


@pytest.mark.parametrize(("raw", "entries", "skipped", "expected"), CASES)
def test_last_post_task_of_a_windows_log(tmp_path, raw, entries, skipped, expected):
    path = tmp_path / "UpdaterService.log"
    path.write_bytes(raw)

    result = updater_log.read_log(str(path))

    assert (result["entries"], result["skipped_lines"]) == (entries, skipped)
    post_task = result["post_task"]
    assert (post_task["version"], post_task["timestamp"]) == expected
    assert post_task["line"].startswith("Info      ")
    assert f"Version={expected[0]}, Culture=neutral" in post_task["line"]


def test_the_line_comes_back_without_the_junk_before_it(tmp_path):
    path = tmp_path / "UpdaterService.log"
    path.write_bytes(
        BOM16 + text(OLD).encode(UTF16) + b"\0\0" * 8 + BOM16 + text(NEW).encode(UTF16)
    )

    assert updater_log.read_log(str(path))["post_task"]["line"] == NEW


def test_a_logs_directory_after_rotation_right_after_the_update(tmp_path):
    """The update wrote its line, then the service rotated the log: the line is in .1."""
    logs = tmp_path / "Logs"
    logs.mkdir()
    (logs / "UpdaterService.log.2").write_bytes(BOM16 + text(STARTING, OLD).encode(UTF16))
    (logs / "UpdaterService.log.1").write_bytes(BOM16 + text(NEW).encode(UTF16))
    (logs / "UpdaterService.log").write_bytes(
        BOM16 + text("Info      12/4/2026 3:50:00 PM     Manifest ID is current").encode(UTF16)
    )

    result = updater_log.read_log(str(logs))

    assert (result["post_task"]["version"], result["post_task"]["timestamp"]) == NEW_TASK
    assert result["post_task"]["file"] == str(logs / "UpdaterService.log.1")
    assert [p["version"] for p in result["post_tasks"]] == ["6.3.1.0", "6.3.2.0"]
    assert result["entries"] == 4
