# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write and read the product's UpdaterService.log.

The product writes one entry per line: a level padded to ten characters, a local time stamp
``M/D/YYYY h:mm:ss AM`` and, after five spaces, the message. After an update it writes

    Info      2/8/2013 11:44:51 AM     Loaded PostTask: Assembly prairieFyre.Updater.Tasks,
    Version=6.3.2.0, Culture=neutral, PublicKeyToken=null

(one line). Real sites hold logs written by several releases, so the reader also accepts ISO
8601, ``YYYY-MM-DD HH:MM:SS(.fff)`` and ``DD.MM.YYYY HH:MM:SS`` stamps, UTF-16 and legacy code
pages, CRLF or LF, and skips lines it cannot read. Times are naive local times, as in the file.
"""

import codecs
import datetime
import io
import os
import re

from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import (
    UpdaterError,
    shown,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.fileio import list_dir

LOG_NAME = "UpdaterService.log"
DEFAULT_ASSEMBLY = "prairieFyre.Updater.Tasks"
LEVEL_WIDTH = 10
MESSAGE_GAP = "     "
LEVELS = ("Info", "Warning", "Error", "Debug")
POST_TASK_HISTORY = 5

# The longest BOM is four bytes (UTF-32), and the product never writes UTF-32: read three.
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

_STAMP_PATTERNS = (
    (
        "us",
        r"(?P<us>\d{1,2}/\d{1,2}/\d{4}\s+\d{1,2}:\d{2}:\d{2}(?:\.\d+)?(?:\s*[AaPp][Mm])?)",
    ),
    (
        "iso",
        r"(?P<iso>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)",
    ),
    ("eu", r"(?P<eu>\d{1,2}\.\d{1,2}\.\d{4}\s+\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?)"),
)
_STAMP = "(?:" + "|".join(pattern for _kind, pattern in _STAMP_PATTERNS) + ")"
_LEVEL = r"\[?(?P<level>[A-Za-z]{3,12})\]?"

# Older releases and log4net layouts put the stamp first; the product's own layout puts the
# level first. Both are entries; anything else (stack traces, banners) is skipped.
_ENTRY_RES = (
    re.compile(r"^\s*" + _LEVEL + r"\s+" + _STAMP + r"\s+(?P<message>.*?)\s*$"),
    re.compile(r"^\s*" + _STAMP + r"\s+" + _LEVEL + r"\s*[:-]?\s+(?P<message>.*?)\s*$"),
)
_POST_TASK_RE = re.compile(
    r"Loaded PostTask:\s*Assembly\s+(?P<assembly>[^,\s]+)\s*,\s*Version=(?P<version>[^,\s]*)"
)

# Rotated names: UpdaterService.log.3, UpdaterService.3.log, UpdaterService_2013-02-08.log.
_ROTATED_SUFFIX_RE = re.compile(r"^UpdaterService\.log\.(?P<n>\d+)$", re.IGNORECASE)
_ROTATED_INFIX_RE = re.compile(r"^UpdaterService\.(?P<n>\d+)\.log$", re.IGNORECASE)
_ROTATED_DATE_RE = re.compile(r"^UpdaterService_(?P<stamp>[0-9][0-9_.T-]*)\.log$", re.IGNORECASE)
_CURRENT_RE = re.compile(r"^UpdaterService\.log$", re.IGNORECASE)


class LogError(UpdaterError):
    """The updater log cannot be read or written."""


def format_time(when):
    """Render ``when`` the way the product does: ``2/8/2013 11:44:51 AM``."""
    hour = when.hour % 12 or 12
    meridiem = "AM" if when.hour < 12 else "PM"
    return (
        f"{when.month}/{when.day}/{when.year} {hour}:{when.minute:02d}:{when.second:02d} {meridiem}"
    )


def format_post_task(version, when, assembly=DEFAULT_ASSEMBLY, level="Info"):
    """Return the PostTask line (without a line break) for ``version`` loaded at ``when``."""
    # A level as long as the field would run into the stamp; the product keeps one space.
    padded = level.ljust(LEVEL_WIDTH) if len(level) < LEVEL_WIDTH else level + " "
    message = (
        f"Loaded PostTask: Assembly {assembly}, Version={version}, Culture=neutral, "
        "PublicKeyToken=null"
    )
    return padded + format_time(when) + MESSAGE_GAP + message


def parse_iso(value, field="timestamp"):
    """Parse an ISO 8601 string into a naive local datetime; an offset is converted first."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    text = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", text)

    # Python before 3.11 accepts only 3 or 6 fraction digits and a space or T.
    match = re.match(r"^(.*?[T ]\d{2}:\d{2}:\d{2})[.,](\d+)(.*)$", text)
    if match:
        fraction = match.group(2)[:6].ljust(6, "0")
        text = f"{match.group(1)}.{fraction}{match.group(3)}"

    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise LogError(
            f"{field}: expected an ISO 8601 date and time, got {shown(value)}",
            field=field,
            value=value,
        ) from None

    return _naive_local(parsed)


def _naive_local(parsed):
    if parsed.tzinfo is None:
        return parsed
    return parsed.astimezone().replace(tzinfo=None)


def _parse_stamp(kind, text):
    """Turn one matched stamp into a naive local datetime, or None when it is not a real date."""
    text = " ".join(text.split())
    try:
        if kind == "iso":
            return parse_iso(text)
        if kind == "eu":
            day_month_year, clock = text.split(" ", 1)
            day, month, year = day_month_year.split(".")
            return _with_clock(int(year), int(month), int(day), clock)
        month_day_year, clock = text.split(" ", 1)
        month, day, year = month_day_year.split("/")
        return _with_clock(int(year), int(month), int(day), clock)
    except (LogError, ValueError):
        return None


def _with_clock(year, month, day, clock):
    meridiem = None
    upper = clock.upper()
    if upper.endswith(("AM", "PM")):
        meridiem = upper[-2:]
        clock = clock[:-2].strip()

    hours, minutes, seconds = clock.replace(",", ".").split(":")
    whole, _dot, fraction = seconds.partition(".")
    hour = int(hours)
    if meridiem is not None:
        if not 1 <= hour <= 12:
            raise ValueError("hour out of range for a 12-hour clock")
        hour = hour % 12 + (12 if meridiem == "PM" else 0)

    micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
    return datetime.datetime(year, month, day, hour, int(minutes), int(whole), micro)


def parse_line(line):
    """Return ``{level, time, message}`` for an entry line, or None for anything else."""
    for entry_re in _ENTRY_RES:
        match = entry_re.match(line)
        if not match:
            continue

        for kind, _pattern in _STAMP_PATTERNS:
            stamp = match.group(kind)
            if stamp is None:
                continue
            when = _parse_stamp(kind, stamp)
            if when is None:
                return None
            return {"level": match.group("level"), "time": when, "message": match.group("message")}
    return None


def parse_post_task(message):
    """Return ``{assembly, version}`` when ``message`` is a loaded PostTask, else None."""
    match = _POST_TASK_RE.search(message)
    if not match:
        return None
    return {"assembly": match.group("assembly"), "version": match.group("version")}


def detect_encoding(head):
    """Pick the codec for a file from its first bytes: a BOM, else a guess, else UTF-8.

    Returns ``(codec, bom_length)``. ``utf-8`` here means "UTF-8, and cp1252 for any line that
    is not UTF-8", which is how the reader treats BOM-less files from older releases.
    """
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec, len(bom)

    # BOM-less UTF-16 shows as NUL bytes in every other position of ASCII text.
    pairs = len(head) // 2
    if pairs >= 2:
        odd_nuls = sum(1 for i in range(pairs) if head[2 * i + 1] == 0)
        even_nuls = sum(1 for i in range(pairs) if head[2 * i] == 0)
        if odd_nuls == pairs and even_nuls == 0:
            return "utf-16-le", 0
        if even_nuls == pairs and odd_nuls == 0:
            return "utf-16-be", 0
    return "utf-8", 0


def _read_head(path, size=64):
    with open(path, "rb") as handle:
        return handle.read(size)


# What a line may start with that is not text: a BOM where two logs were joined or a writer
# wrote its preamble again, and NULs where Windows lost unflushed data in a crash and the
# service went on writing after them.
_LINE_JUNK = "\ufeff\x00"


def iter_lines(path):
    """Yield the decoded lines of one log file, one at a time, without line breaks.

    CRLF, LF and a lone CR each end a line, in any mix.
    """
    codec, bom_length = detect_encoding(_read_head(path))

    if codec.startswith("utf-16"):
        with open(path, "rb") as raw:
            raw.seek(bom_length)
            text = io.TextIOWrapper(raw, encoding=codec, errors="replace", newline=None)
            for line in text:
                yield line.rstrip("\r\n").lstrip(_LINE_JUNK)
        return

    # UTF-8 and cp1252 keep "\n" and "\r" single bytes, so splitting bytes first is safe and
    # lets each line fall back on its own: one stray legacy byte does not spoil the whole file.
    with open(path, "rb") as raw:
        raw.seek(bom_length if codec == "utf-8-sig" else 0)
        for raw_line in raw:
            for chunk in raw_line.rstrip(b"\r\n").split(b"\r"):
                try:
                    text = chunk.decode("utf-8")
                except UnicodeDecodeError:
                    text = chunk.decode("cp1252", errors="replace")
                yield text.lstrip(_LINE_JUNK)


def _rotation_key(name):
    """Sort key putting a Logs directory's files oldest first, or None for other files."""
    match = _ROTATED_DATE_RE.match(name)
    if match:
        return (0, re.sub(r"\D", "", match.group("stamp")), 0)
    match = _ROTATED_SUFFIX_RE.match(name) or _ROTATED_INFIX_RE.match(name)
    if match:
        # log4net and logrotate both give the highest number to the oldest file.
        return (1, "", -int(match.group("n")))
    if _CURRENT_RE.match(name):
        return (2, "", 0)
    return None


def log_files(path):
    """Return the log files to read for ``path``, oldest first.

    ``path`` is one log file or a Logs directory; in a directory only UpdaterService.log and its
    rotated siblings count.
    """
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise LogError(f"updater log {path} does not exist", file=path)

    names = list_dir(path, "the Logs directory", LogError)

    keyed = []
    for name in names:
        key = _rotation_key(name)
        full = os.path.join(path, name)
        if key is not None and os.path.isfile(full):
            keyed.append((key, name, full))
    return [full for _key, _name, full in sorted(keyed)]


def read_log(path, history=POST_TASK_HISTORY):
    """Read a log file or Logs directory and summarise its PostTask lines.

    Returns ``{files, entries, skipped_lines, post_task, post_tasks}``; ``post_task`` is the last
    loaded PostTask in file order (oldest file first) or None, ``post_tasks`` the last
    ``history`` of them, oldest first.
    """
    files = log_files(path)

    entries = 0
    skipped = 0
    post_tasks = []
    for name in files:
        try:
            for line in iter_lines(name):
                if not line.strip():
                    continue

                entry = parse_line(line)
                if entry is None:
                    skipped += 1
                    continue
                entries += 1

                post_task = parse_post_task(entry["message"])
                if post_task is None:
                    continue
                post_tasks.append(
                    {
                        "version": post_task["version"],
                        "assembly": post_task["assembly"],
                        "timestamp": entry["time"].isoformat(),
                        "line": line.strip(),
                        "file": name,
                    }
                )
                del post_tasks[:-history]
        except OSError as exc:
            raise LogError(
                f"cannot read the updater log {name}: {exc.strerror}", file=name
            ) from None

    return {
        "files": files,
        "entries": entries,
        "skipped_lines": skipped,
        "post_task": post_tasks[-1] if post_tasks else None,
        "post_tasks": post_tasks,
    }


def resolve_log_path(path):
    """The log file that ``path`` names for writing.

    A directory stands for the UpdaterService.log inside it, and so does a missing path whose
    name does not end in ``.log`` (a Logs directory not created yet); anything else is the file.
    """
    is_file_name = os.path.basename(path.rstrip("/\\")).lower().endswith(".log")
    if os.path.isdir(path) or (not os.path.lexists(path) and not is_file_name):
        return os.path.join(path, LOG_NAME)
    return path


def _append_plan(path):
    """Return ``(codec, bom, ends_with_newline)`` for appending to ``path``.

    ``codec`` names the file's encoding as reported to the user (``utf-8-sig`` for UTF-8 with a
    BOM); ``bom`` is what to write first, only for a new or empty file.
    """
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        size = 0

    if size == 0:
        return "utf-8-sig", codecs.BOM_UTF8, True

    codec, _bom_length = detect_encoding(_read_head(path))
    unit = 2 if codec.startswith("utf-16") else 1
    with open(path, "rb") as handle:
        handle.seek(size - unit)
        tail = handle.read(unit)
    return codec, b"", tail == "\n".encode(_write_codec(codec))


def _write_codec(codec):
    # The BOM is written once by hand; the "-sig" codec would repeat it on every append.
    return "utf-8" if codec == "utf-8-sig" else codec


def append_post_task(path, line):
    """Append ``line`` with CRLF in the file's own encoding and return that encoding's name.

    A missing file (and its directory) is created, UTF-8 with a BOM as the product writes it.
    """
    try:
        codec, bom, ends_with_newline = _append_plan(path)

        text = line + "\r\n"
        if not ends_with_newline:
            # A half-written last line would swallow ours; close it first.
            text = "\r\n" + text
        payload = bom + text.encode(_write_codec(codec))

        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)

        # One write in append mode: the product's own writer may hold the file open, so the
        # line is appended in place rather than by replacing the file.
        with open(path, "ab") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise LogError(
            f"cannot append to the updater log {path}: {exc.strerror}", file=path
        ) from None

    return codec


def last_post_task(path):
    """The last loaded PostTask of one file, or None when the file is missing or has none."""
    if not os.path.isfile(path):
        return None
    return read_log(path, history=1)["post_task"]


def post_task_is_current(post_task, version, since=None):
    """True when ``post_task`` records ``version`` at ``since`` or later (a naive datetime)."""
    if post_task is None or post_task["version"] != version:
        return False
    if since is None:
        return True
    return datetime.datetime.fromisoformat(post_task["timestamp"]) >= since


def _check_field(field, value):
    if not value or any(ch in value for ch in ", \r\n"):
        raise LogError(
            f"{field}: expected a non-empty value without comma, space or line break for the "
            f"PostTask line, got {shown(value)}",
            field=field,
            value=value,
        )


def write_post_task(
    path, version, *, assembly=DEFAULT_ASSEMBLY, level="Info", when=None, since=None, check=False
):
    """Append the PostTask line unless the file's last one already has ``version``.

    ``when`` and ``since`` are naive local datetimes; ``when`` defaults to now. Returns
    ``{changed, path, line, encoding, previous}`` where ``previous`` is the last PostTask
    found before writing (None when there was none).
    """
    _check_field("version", version)
    _check_field("assembly", assembly)

    target = resolve_log_path(path)
    line = format_post_task(version, when or datetime.datetime.now(), assembly, level)

    try:
        previous = last_post_task(target)
        codec = _append_plan(target)[0]
    except OSError as exc:
        raise LogError(
            f"cannot read the updater log {target}: {exc.strerror}", file=target
        ) from None

    result = {
        "changed": True,
        "path": target,
        "line": line,
        "encoding": codec,
        "previous": previous,
    }
    if post_task_is_current(previous, version, since):
        result.update(changed=False, line=previous["line"])
        return result

    if not check:
        result["encoding"] = append_post_task(target, line)
    return result
