"""How long one IVR service is down during an update, against a bare restart of it.

Starts a one-host lab whose services never have a call (permission is immediate), then, in
one run of this script:

- touches up to --warm-mib of free memory once (see warm_memory), so that a virtual machine's
  first touch of its pages is charged to no measured start-up;

- restarts IVR Inbound bare, through the collection's own service control
  (`prairiefyre.updater.ivr_service state=restarted`, one module run) and with
  `supervisorctl restart`: the baseline is the faster of the two;
- updates module ivr_inbound with `update_ivr.yml` to versions whose payload file is 1, 100
  and 500 MiB (each size --repeats times), one bare restart of each kind after each update;
  each downtime is split into the service's shutdown, supervisord's "stopped" to "spawned"
  (the part the updater controls) and the service's start-up;
- updates once more to a 1 GiB payload while it samples the memory of the ansible-playbook
  process tree.

Downtime is seen from the service: a thread asks its /status every 2 ms and the longest gap
between two answers during a restart or an update is that run's downtime. The bytes sent are
counted on the connection (bench/plugins/connection/counting_local.py logs every file put on
the host) and compared with the bytes of the files that differ, computed here from the
installed files and the enterprise manifest. The last line is

    downtime: worst_ratio=<worst median downtime / faster median bare restart>
              bytes_ratio=<bytes sent / changed bytes> rss_mb=<peak, 1 GiB payload>

(one line). A measurement, not a test: nothing here asserts a time.

    .venv/bin/python bench/downtime.py                  # lab under /tmp on 127.0.0.1:19460
    .venv/bin/python bench/downtime.py --sizes 1,100 --repeats 2 --rss-size 0 --keep
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LABCTL = REPO / "lab" / "labctl.py"
INVENTORY = REPO / "inventory" / "lab"
CONNECTIONS = Path(__file__).resolve().parent / "plugins" / "connection"
BIN = Path(sys.executable).parent
HOST, MODULE, PROGRAM = "ivr01", "ivr_inbound", "ivr01_inbound"
MIB = 1024 * 1024

# Run by a child of this script, so that its RUSAGE_CHILDREN holds the playbook's tree only.
RUSAGE_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[2:], check=False).returncode\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "open(sys.argv[1], 'w').write(str(peak))\n"
    "sys.exit(rc)\n"
)


class Lab:
    """The benchmark's lab: its directory, ports, environment and commands."""

    def __init__(self, directory: Path, base_port: int) -> None:
        self.dir = directory
        self.port = base_port + 10  # host 1, service 0: IVR Inbound
        self.bytes_log = directory / "bytes.log"
        self.gaps: dict[str, list[dict[str, float]]] = {}
        scratch = directory / "scratch"
        self.env = dict(
            os.environ,
            PRAIRIEFYRE_LAB_DIR=str(directory),
            PRAIRIEFYRE_LAB_BASE_PORT=str(base_port),
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_PIPELINING="True",
            ANSIBLE_CONNECTION_PLUGINS=str(CONNECTIONS),
            ANSIBLE_REMOTE_TMP=str(scratch / "remote"),
            ANSIBLE_LOCAL_TEMP=str(scratch / "local"),
            TMPDIR=str(scratch),
            BENCH_BYTES_LOG=str(self.bytes_log),
            PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        )
        scratch.mkdir(parents=True, exist_ok=True)

    def labctl(self, *args: str) -> None:
        subprocess.run([sys.executable, str(LABCTL), *args], env=self.env, check=True)

    def ansible(self, *args: str, log: str) -> subprocess.CompletedProcess:
        with open(self.dir / f"{log}.log", "w", encoding="utf-8") as out:
            return subprocess.run(
                list(args),
                check=False,
                env=self.env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def update_command(self) -> list[str]:
        return [
            str(BIN / "ansible-playbook"),
            "-i",
            str(INVENTORY),
            str(REPO / "playbooks" / "update_ivr.yml"),
            "-e",
            f"update_ivr_hosts={HOST}",
            "-e",
            "ansible_connection=counting_local",
        ]

    def sent_file_bytes(self) -> int:
        """Bytes of the files the controller put on the IVR host since the log was cleared."""
        total = 0
        if self.bytes_log.exists():
            for line in self.bytes_log.read_text(encoding="utf-8").splitlines():
                kind, host, size = line.split()
                if kind == "file" and host == HOST:
                    total += int(size)
        return total

    @property
    def install(self) -> Path:
        return self.dir / "hosts" / HOST / "install"


class Poller:
    """Asks the service's /status every few milliseconds and keeps when it answered."""

    def __init__(self, port: int, interval: float = 0.002) -> None:
        self.port = port
        self.interval = interval
        self.answered: list[float] = []
        # supervisord logs wall-clock times; the gaps are measured on the monotonic clock.
        self._wall_offset = time.time() - time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        # The first answer after a start may come a moment after the command returned.
        time.sleep(0.3)
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                connection.request("GET", "/status")
                connection.getresponse().read()
                connection.close()
                self.answered.append(time.monotonic())
            except (OSError, http.client.HTTPException):
                pass
            self._stop.wait(self.interval)

    def longest_gap(self) -> float:
        times = self.answered
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)

    def gap_bounds(self) -> tuple[float, float] | None:
        """Wall-clock time of the last answer before the longest gap and the first after."""
        times = self.answered
        if len(times) < 2:
            return None
        index = max(range(len(times) - 1), key=lambda i: times[i + 1] - times[i])
        offset = self._wall_offset
        return times[index] + offset, times[index + 1] + offset


SUPERVISORD_LINE = re.compile(
    r"^(\S+ \S+),(\d{3}) INFO (stopped: ivr01_inbound|spawned: 'ivr01_inbound')", re.M
)


def supervisord_events(lab: Lab) -> tuple[float, float] | None:
    """Wall-clock times of supervisord's last "stopped" and "spawned" of the service."""
    text = (lab.dir / "logs" / "supervisord.log").read_text(encoding="utf-8", errors="replace")
    events = [
        (time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(ms) / 1000, what)
        for stamp, ms, what in SUPERVISORD_LINE.findall(text)
    ]
    stops = [when for when, what in events if what.startswith("stopped")]
    spawns = [when for when, what in events if what.startswith("spawned")]
    return (stops[-1], spawns[-1]) if stops and spawns else None


def phases(lab: Lab, poller: Poller) -> dict[str, float]:
    """The downtime in three parts: the service's shutdown (last answer to supervisord's
    "stopped"), the part the updater or supervisorctl controls ("stopped" to "spawned"), and
    the service's start-up ("spawned" to its first answer). supervisord logs milliseconds, so
    each part is good to about 1 ms."""
    nan = float("nan")
    events, bounds = supervisord_events(lab), poller.gap_bounds()
    if events is None or bounds is None:
        return {"shutdown": nan, "window": nan, "startup": nan}
    (stopped, spawned), (last, first) = events, bounds
    return {"shutdown": stopped - last, "window": spawned - stopped, "startup": first - spawned}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(MIB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def changed_bytes(lab: Lab) -> int:
    """Bytes of the module's files whose installed copy is missing or different, computed here
    from the installed files and the enterprise manifest, not by the collection."""
    manifest = json.loads((lab.dir / "enterprise" / "dist" / "manifest.json").read_text())
    module = manifest["modules"][MODULE]
    target = lab.install / module["target"]
    total = 0
    for path, entry in module["files"].items():
        installed = target / path
        same = (
            installed.is_file()
            and installed.stat().st_size == entry["size"]
            and sha256_of(installed) == entry["sha256"]
        )
        total += 0 if same else entry["size"]
    return total


def write_payload(path: Path, size: int, tag: str) -> None:
    """A file of `size` bytes, unique per tag, written in 1 MiB chunks."""
    block = os.urandom(MIB)
    with open(path, "wb") as handle:
        for index in range(size // MIB):
            handle.write(f"{tag}:{index:08d}".encode().ljust(32, b".") + block[32:])
        handle.write(block[: size % MIB])


def apply_patch_function():
    collections = str(REPO / ".build" / "collections")
    if collections not in sys.path:
        sys.path.insert(0, collections)
    from ansible_collections.prairiefyre.updater.plugins.module_utils.patch import (  # noqa: PLC0415
        apply_patch,
    )

    return apply_patch


def publish(lab: Lab, number: int, size: int) -> str:
    """Patch the enterprise: module ivr_inbound at version 6.4.<number>.0 with a payload."""
    version = f"6.4.{number}.0"
    bundle = lab.dir / "bundles" / f"bench-{number}"
    files = bundle / "files" / MODULE
    files.mkdir(parents=True)
    (files / "version.txt").write_text(version + "\n", encoding="utf-8")
    write_payload(files / "Payload.bin", size, version)
    manifest_id = 2000 + number
    patch = {
        "format": 1,
        "patch_id": f"bench-{number}",
        "product_version": version,
        "modules": {MODULE: {"manifest_id": manifest_id, "version": version, "files": {}}},
    }
    (bundle / "patch.json").write_text(json.dumps(patch, indent=2) + "\n", encoding="utf-8")
    subprocess.run(
        [sys.executable, str(REPO / "lab" / "make_bundle.py"), str(bundle)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    apply_patch_function()(str(lab.dir / "enterprise" / "dist"), str(bundle))
    shutil.rmtree(bundle)
    # The enterprise's copy is set-up, not part of the update: keep its writeback out of it.
    os.sync()
    return version


def restart_bare(lab: Lab, how: str) -> float:
    if how == "ivr_service":
        args = {
            "name": PROGRAM,
            "state": "restarted",
            "manager": "supervisord",
            "supervisor_config": str(lab.dir / "supervisord.conf"),
        }
        command = [
            str(BIN / "ansible"),
            HOST,
            "-i",
            str(INVENTORY),
            "-e",
            "ansible_connection=counting_local",
            "-m",
            "prairiefyre.updater.ivr_service",
            "-a",
            json.dumps(args),
        ]
    else:
        command = [str(BIN / "supervisorctl"), "-c", str(lab.dir / "supervisord.conf")]
        command += ["restart", PROGRAM]

    # The update flushes the filesystem before its stop; the same quiet disk for the baseline.
    os.sync()
    with Poller(lab.port) as poller:
        result = lab.ansible(*command, log=f"restart-{how}")
    if result.returncode != 0:
        raise SystemExit(f"bench: the bare restart ({how}) failed; see {lab.dir}/restart-{how}.log")
    lab.gaps.setdefault(how, []).append(phases(lab, poller))
    return poller.longest_gap()


def update(lab: Lab, number: int, size: int) -> dict:
    version = publish(lab, number, size)
    changed = changed_bytes(lab)
    lab.bytes_log.unlink(missing_ok=True)

    began = time.monotonic()
    with Poller(lab.port) as poller:
        result = lab.ansible(*lab.update_command(), log=f"update-{number}")
    if result.returncode != 0:
        raise SystemExit(f"bench: update {number} failed; see {lab.dir}/update-{number}.log")
    return {
        "version": version,
        "downtime": poller.longest_gap(),
        "phases": phases(lab, poller),
        "sent": lab.sent_file_bytes(),
        "changed": changed,
        "seconds": time.monotonic() - began,
    }


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _kib(path: str, field: str) -> int:
    try:
        text = Path(path).read_text()
    except OSError:
        return 0
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) if match else 0


def update_measuring_memory(lab: Lab, number: int, size: int) -> dict:
    """One update while the memory of the ansible-playbook tree is sampled every 20 ms."""
    publish(lab, number, size)
    peak_file = lab.dir / "ru_maxrss"
    command = [sys.executable, "-c", RUSAGE_WRAPPER, str(peak_file), *lab.update_command()]
    peak_rss = peak_pss = 0
    with open(lab.dir / f"update-{number}.log", "w", encoding="utf-8") as out:
        process = subprocess.Popen(
            command, env=lab.env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
        )
        while process.poll() is None:
            pids = [pid for pid in _tree(process.pid) if pid != process.pid]
            peak_rss = max(peak_rss, sum(_kib(f"/proc/{pid}/status", "VmRSS") for pid in pids))
            peak_pss = max(peak_pss, sum(_kib(f"/proc/{pid}/smaps_rollup", "Pss") for pid in pids))
            time.sleep(0.02)
    if process.returncode != 0:
        raise SystemExit(f"bench: update {number} failed; see {lab.dir}/update-{number}.log")
    return {
        "tree_rss_mb": peak_rss / 1024,
        "tree_pss_mb": peak_pss / 1024,
        "largest_mb": int(peak_file.read_text()) / 1024,
    }


# Touches every page of an anonymous mapping of the size given, then exits: the pages go back
# to the kernel's free lists, now backed by the host.
WARM_CHILD = (
    "import mmap, sys\n"
    "size = int(sys.argv[1]) << 20\n"
    "area = mmap.mmap(-1, size)\n"
    "for offset in range(0, size, 4096):\n"
    "    area[offset] = 1\n"
)


def warm_memory(limit_mib: int) -> str:
    """Touch the machine's free memory once, so that no measured start-up pays for it.

    On a virtual machine whose memory the host backs lazily, the first touch of a guest page
    costs a host fault (about 10 us here, against 3 us for a page touched before). A payload
    of 500 MiB grows the page cache by gigabytes across a run, so the service that starts
    right after an update gets pages nobody touched yet and starts up slower, while a bare
    restart later in the run reuses pages. That is the machine's first use of its memory, not
    the update; touching the free memory once first takes it out of every figure.
    """
    available = _kib("/proc/meminfo", "MemAvailable") // 1024
    # Leave room for the lab, the controller and the payloads' own page cache.
    size = max(min(limit_mib, available - 3072), 0)
    if size == 0:
        return "warm-up: skipped (not enough free memory)"
    began = time.monotonic()
    subprocess.run([sys.executable, "-c", WARM_CHILD, str(size)], check=True)
    return f"warm-up: touched {size} MiB of free memory in {time.monotonic() - began:.1f} s"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab-dir", help="lab directory (default: a new one under /tmp)")
    parser.add_argument("--base-port", type=int, default=19460, help="lab base port (19460)")
    parser.add_argument("--sizes", default="1,100,500", help="payloads in MiB (1,100,500)")
    parser.add_argument("--repeats", type=int, default=5, help="updates per payload (5)")
    parser.add_argument("--restarts", type=int, default=4, help="bare restarts first (4)")
    parser.add_argument("--rss-size", type=int, default=1024, help="MiB for memory; 0: skip")
    parser.add_argument(
        "--warm-mib",
        type=int,
        default=16384,
        help="touch up to this much free memory before measuring; 0: skip (16384)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the lab up and on disk")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    directory = Path(args.lab_dir or tempfile.mkdtemp(prefix="pf-bench-", dir="/tmp"))
    lab = Lab(directory, args.base_port)
    try:
        lab.labctl("up", "--hosts", HOST, "--load", "0")
        return measure(lab, args, sizes)
    finally:
        if not args.keep:
            lab.labctl("down")
            shutil.rmtree(directory, ignore_errors=True)


def measure(lab: Lab, args: argparse.Namespace, sizes: list[int]) -> int:
    if args.warm_mib:
        print(warm_memory(args.warm_mib), flush=True)
    restart_bare(lab, "ivr_service")  # warm-up, not counted
    lab.gaps.clear()
    bare = [restart_bare(lab, "ivr_service") for _restart in range(args.restarts)]
    ctl = [restart_bare(lab, "supervisorctl") for _restart in range(args.restarts)]

    runs: dict[int, list[dict]] = {}
    number = 0
    for size in sizes:
        for _repeat in range(args.repeats):
            number += 1
            runs.setdefault(size, []).append(update(lab, number, size * MIB))
            last = runs[size][-1]
            print(
                f"update {number}: {size} MiB, down {last['downtime']:.3f} s "
                f"({_phases([last['phases']]).removeprefix('median ms: ')} ms)",
                flush=True,
            )
            # Interleaved, so that the baselines see the same machine load as the updates.
            bare.append(restart_bare(lab, "ivr_service"))
            ctl.append(restart_bare(lab, "supervisorctl"))

    for name, how, values in (
        ("ivr_service restarted", "ivr_service", bare),
        ("supervisorctl restart", "supervisorctl", ctl),
    ):
        print(f"bare restart, {name}: {_secs(values)}, median {statistics.median(values):.3f} s")
        print(f"  {_phases(lab.gaps[how])}")
    # The stricter baseline: the faster of the two bare restarts.
    baseline = min(statistics.median(bare), statistics.median(ctl))

    ratios, sent, changed = [], 0, 0
    for size, results in runs.items():
        downs = [r["downtime"] for r in results]
        ratio = statistics.median(downs) / baseline
        ratios.append(ratio)
        sent += sum(r["sent"] for r in results)
        changed += sum(r["changed"] for r in results)
        print(
            f"update {size:>5} MiB: downtime {_secs(downs)}, median x{ratio:.2f} of the faster "
            f"bare restart; sent {sum(r['sent'] for r in results)} B for "
            f"{sum(r['changed'] for r in results)} B changed; "
            f"{statistics.median(r['seconds'] for r in results):.1f} s a run"
        )
        print(f"  {_phases([r['phases'] for r in results])}")

    rss = "n/a"
    if args.rss_size:
        memory = update_measuring_memory(lab, number + 1, args.rss_size * MIB)
        print(
            f"update {args.rss_size:>5} MiB: ansible-playbook tree peak RSS "
            f"{memory['tree_rss_mb']:.0f} MiB (PSS {memory['tree_pss_mb']:.0f} MiB), largest "
            f"single process {memory['largest_mb']:.0f} MiB"
        )
        rss = f"{memory['tree_rss_mb']:.0f}"

    print(f"downtime: worst_ratio={max(ratios):.2f} bytes_ratio={sent / changed:.2f} rss_mb={rss}")
    return 0


def _phases(runs: list[dict[str, float]]) -> str:
    """Median of each part of the downtime, in ms."""
    parts = []
    for name, label in (
        ("shutdown", "shutdown"),
        ("window", "supervisord stopped -> spawned"),
        ("startup", "start-up"),
    ):
        values = [run[name] for run in runs if run[name] == run[name]]
        median = f"{statistics.median(values) * 1000:.0f}" if values else "n/a"
        parts.append(f"{label} {median}")
    return "median ms: " + ", ".join(parts)


def _secs(values: list[float]) -> str:
    return " ".join(f"{value:.3f}" for value in values) + " s"


if __name__ == "__main__":
    sys.exit(main())
