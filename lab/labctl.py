"""Run the embedded lab: an enterprise distribution and IVR hosts under one supervisord.

    .venv/bin/python lab/labctl.py up|down|status|reset|report
    .venv/bin/python lab/labctl.py ctl status        # supervisorctl with the lab's config

The layout, host numbers and ports are the ones docs/architecture.md gives under "The lab".
Everything listens on 127.0.0.1 only. Run it with the collection's venv: it starts that venv's
supervisord and talks to it through the supervisor package over the lab's unix socket.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xmlrpc.client
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SIMULATOR = REPO / "lab" / "ivr_simulator.py"
BASE_BUNDLE = REPO / "lab" / "patches" / "base-6.3.1"
COLLECTIONS = REPO / ".build" / "collections"
DEFAULT_HOSTS = ("ivr01", "ivr02")
DEFAULT_BASE_PORT = 18600
ENTERPRISE_PROGRAM = "enterprise_http"
STATE_FILE = "lab.json"

# Service name, program suffix and port offset j of docs/architecture.md.
SERVICES = (("IVR Inbound", "inbound", 0), ("IVR Outbound", "outbound", 1), ("IVR UpIQ", "upiq", 2))

# What `up` uses unless told otherwise: small and quick, so a demo update is granted within
# seconds (four ports at 15 % load are all idle about half of the time).
DEFAULT_SIM = {"ports": 4, "load": 0.15, "mean_call": 4.0, "time_scale": 1.0, "seed": None}

# A Unix socket path longer than this fails to bind on Linux (sun_path is 108 bytes).
MAX_SOCKET_PATH = 100
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


class LabError(Exception):
    """A lab operation failed; the message says which part and why."""


# -- layout -------------------------------------------------------------------------------


def service_port(base_port: int, host_index: int, offset: int) -> int:
    """Port of service `offset` (0 Inbound, 1 Outbound, 2 UpIQ) on host number `host_index`."""
    return base_port + 10 * host_index + offset


def layout(hosts: list[str], base_port: int) -> list[dict]:
    """One entry per simulator program: host, index, service, program name and port."""
    programs = []
    for index, host in enumerate(hosts, start=1):
        for service, suffix, offset in SERVICES:
            programs.append(
                {
                    "host": host,
                    "index": index,
                    "service": service,
                    "program": f"{host}_{suffix}",
                    "port": service_port(base_port, index, offset),
                }
            )

    return programs


class Lab:
    """The lab directory and the settings it was brought up with."""

    def __init__(self, root: Path, hosts: list[str], base_port: int, sim: dict) -> None:
        self.root = root
        self.hosts = hosts
        self.base_port = base_port
        self.sim = sim

    conf = property(lambda self: self.root / "supervisord.conf")
    sock = property(lambda self: self.root / "supervisor.sock")
    pidfile = property(lambda self: self.root / "supervisord.pid")
    logs = property(lambda self: self.root / "logs")
    dist = property(lambda self: self.root / "enterprise" / "dist")
    reports = property(lambda self: self.root / "reports")

    def install_root(self, host: str) -> Path:
        return self.root / "hosts" / host / "install"

    def counters(self, host: str, program: str) -> Path:
        return self.root / "hosts" / host / "sim" / f"{program}.json"

    def programs(self) -> list[dict]:
        return layout(self.hosts, self.base_port)

    def state(self) -> dict:
        return {"hosts": self.hosts, "base_port": self.base_port, "sim": self.sim}


def resolve_lab(args: argparse.Namespace) -> Lab:
    """Settings from the command line, else from the lab's lab.json, else the defaults."""
    root = Path(args.lab_dir).expanduser().absolute()
    saved: dict = {}
    state_path = root / STATE_FILE
    if state_path.is_file():
        try:
            saved = json.loads(state_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise LabError(f"{state_path} is not valid JSON: {exc}") from exc

    hosts = args.hosts or saved.get("hosts") or list(DEFAULT_HOSTS)
    base_port = args.base_port or saved.get("base_port") or DEFAULT_BASE_PORT
    sim = {**DEFAULT_SIM, **saved.get("sim", {})}
    for key in DEFAULT_SIM:
        value = getattr(args, key, None)
        if value is not None:
            sim[key] = value

    return Lab(root, list(hosts), int(base_port), sim)


# -- seeding ------------------------------------------------------------------------------


def load_apply_patch():
    """Import the collection's apply_patch through the link that `make link` creates."""
    if not (COLLECTIONS / "ansible_collections" / "prairiefyre" / "updater").exists():
        raise LabError(
            f"{COLLECTIONS}/ansible_collections/prairiefyre/updater is missing; run `make link`"
        )

    if str(COLLECTIONS) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS))

    # Imported here because the collection is only importable once `make link` has run.
    from ansible_collections.prairiefyre.updater.plugins.module_utils.patch import (  # noqa: PLC0415
        apply_patch,
    )

    return apply_patch


def seed_enterprise(lab: Lab, apply_patch=None, bundle: Path = BASE_BUNDLE) -> None:
    """Build enterprise/dist from the base release bundle, unless it is there already.

    The distribution is built beside its final place and renamed in, so a failed seed leaves
    no half-built enterprise that a later `up` would take for a good one.
    """
    if (lab.dist / "manifest.json").is_file():
        return

    if not bundle.exists():
        raise LabError(f"the base release bundle {bundle} is missing")

    apply_patch = apply_patch or load_apply_patch()
    partial = lab.root / "enterprise.partial"
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "dist").mkdir(parents=True)
    try:
        apply_patch(str(partial / "dist"), str(bundle))
    except Exception as exc:
        # The collection's own errors carry a one-sentence message; any other failure is
        # shown as it is, since the lab cannot start without its enterprise.
        raise LabError(f"applying {bundle} to {partial / 'dist'} failed: {exc}") from exc

    if not (partial / "dist" / "manifest.json").is_file():
        raise LabError(f"applying {bundle} wrote no manifest.json")

    shutil.rmtree(lab.root / "enterprise", ignore_errors=True)
    partial.rename(lab.root / "enterprise")
    print(f"lab: enterprise distribution built from {bundle.name} in {lab.dist}")


def log_stamp(when: datetime) -> str:
    hour = when.hour % 12 or 12
    meridiem = "AM" if when.hour < 12 else "PM"
    return (
        f"{when.month}/{when.day}/{when.year} {hour}:{when.minute:02d}:{when.second:02d} {meridiem}"
    )


def log_line(level: str, when: datetime, message: str) -> str:
    return f"{level:<10}{log_stamp(when)}     {message}\r\n"


def seed_log(path: Path, version: str, now: datetime) -> None:
    """An UpdaterService.log as a host that ran the previous release would have it."""
    earlier = now - timedelta(days=12, hours=3, minutes=17)
    lines = [
        log_line("Info", earlier, "prairieFyre Updater Service started"),
        log_line("Info", earlier + timedelta(seconds=4), "Checking the Enterprise Server manifest"),
        log_line(
            "Info",
            earlier + timedelta(seconds=41),
            f"Loaded PostTask: Assembly prairieFyre.Updater.Tasks, Version={version}, "
            "Culture=neutral, PublicKeyToken=null",
        ),
        log_line("Info", now - timedelta(minutes=10), "Manifest ID is current, nothing to do"),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(codecs.BOM_UTF8 + "".join(lines).encode("utf-8"))


def install_host(lab: Lab, host: str) -> None:
    """Install every module of the enterprise's current manifest on a new host."""
    final = lab.root / "hosts" / host
    if (final / "install" / ".updater" / "manifest.json").is_file():
        return

    manifest = json.loads((lab.dist / "manifest.json").read_text(encoding="utf-8"))
    partial = lab.root / "hosts" / f"{host}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    install = partial / "install"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    record = {"format": 1, "serial": manifest["serial"], "modules": {}}
    for name, module in sorted(manifest["modules"].items()):
        package = lab.dist / "packages" / name / str(module["manifest_id"])
        target = install / module["target"]
        if not package.is_dir():
            raise LabError(f"package {package} of module {name} is missing")

        shutil.copytree(package, target, dirs_exist_ok=True)
        record["modules"][name] = {
            "manifest_id": module["manifest_id"],
            "version": module["version"],
            "updated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    (install / ".updater").mkdir(parents=True)
    (install / ".updater" / "manifest.json").write_text(
        json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    seed_log(install / "CCM" / "Logs" / "UpdaterService.log", manifest["product_version"], now)
    (partial / "sim").mkdir()
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    print(f"lab: {host} installed at {manifest['product_version']} in {final / 'install'}")


# -- supervisord --------------------------------------------------------------------------


def _conf_value(value: str) -> str:
    # supervisord expands %(name)s in values, so a literal percent sign must be doubled.
    return value.replace("%", "%%")


def _command(args: list[str]) -> str:
    return _conf_value(" ".join(shlex.quote(str(arg)) for arg in args))


def simulator_command(lab: Lab, program: dict, python: str) -> list[str]:
    sim = lab.sim
    host = program["host"]
    suffix = program["program"].rsplit("_", 1)[1]
    target = {"inbound": "IVR/Inbound", "outbound": "IVR/Outbound", "upiq": "IVR/UpIQ"}[suffix]
    command = [
        python,
        "-u",
        str(SIMULATOR),
        "--service",
        program["service"],
        "--listen",
        f"127.0.0.1:{program['port']}",
        "--install-dir",
        str(lab.install_root(host) / target),
        "--counters",
        str(lab.counters(host, program["program"])),
        "--ports",
        str(sim["ports"]),
        "--load",
        str(sim["load"]),
        "--mean-call",
        str(sim["mean_call"]),
        "--time-scale",
        str(sim["time_scale"]),
    ]
    if sim.get("seed") is not None:
        command += ["--seed", str(int(sim["seed"]) + program["port"])]

    return command


def render_config(lab: Lab, python: str) -> str:
    """The supervisord configuration: one program per service plus the enterprise server."""
    root = _conf_value(str(lab.root))
    sections = [
        "; Written by lab/labctl.py; `labctl.py up` rewrites it while the lab is down.",
        "[unix_http_server]",
        f"file={root}/supervisor.sock",
        "chmod=0700",
        "",
        "[supervisord]",
        f"pidfile={root}/supervisord.pid",
        f"logfile={root}/logs/supervisord.log",
        f"childlogdir={root}/logs",
        f"directory={root}",
        f"identifier=prairiefyre-lab-{lab.base_port}",
        "logfile_maxbytes=1MB",
        "logfile_backups=1",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{root}/supervisor.sock",
        "",
    ]
    enterprise = [
        python,
        "-m",
        "http.server",
        "--bind",
        "127.0.0.1",
        str(lab.base_port),
        "--directory",
        str(lab.dist),
    ]
    programs = [(ENTERPRISE_PROGRAM, enterprise)]
    programs += [(p["program"], simulator_command(lab, p, python)) for p in lab.programs()]
    for name, command in programs:
        sections += [
            f"[program:{name}]",
            f"command={_command(command)}",
            # A service that stops must stay stopped, and one that cannot start must show as
            # FATAL at once instead of being retried behind the updater's back.
            "autostart=true",
            "autorestart=false",
            "startsecs=1",
            "startretries=0",
            "stopsignal=TERM",
            "stopwaitsecs=10",
            "redirect_stderr=true",
            f"stdout_logfile={root}/logs/{name}.log",
            "stdout_logfile_maxbytes=1MB",
            "stdout_logfile_backups=1",
            'environment=PYTHONDONTWRITEBYTECODE="1"',
            "",
        ]

    return "\n".join(sections)


def rpc(lab: Lab):
    """An XML-RPC proxy to the lab's supervisord over its unix socket."""
    try:
        # Imported here so that a run with the wrong Python gets a message instead of a trace.
        from supervisor.xmlrpc import SupervisorTransport  # noqa: PLC0415
    except ImportError as exc:
        raise LabError(
            f"the supervisor package is not importable by {sys.executable}; "
            "run labctl with the collection's venv (.venv/bin/python)"
        ) from exc

    transport = SupervisorTransport(None, None, f"unix://{lab.sock}")
    # The URL is a placeholder that xmlrpc.client requires; the transport uses the socket.
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def supervisord_pid(lab: Lab) -> int | None:
    """The pid of the lab's running supervisord, or None when it does not run."""
    try:
        pid = int(lab.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None

    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None

    # A stale pidfile may name a pid that the system reused for something else.
    if "supervisord" not in cmdline or str(lab.conf) not in cmdline:
        return None

    return pid


def process_infos(lab: Lab) -> dict[str, dict]:
    try:
        infos = rpc(lab).supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error) as exc:
        raise LabError(f"cannot reach supervisord through {lab.sock}: {exc}") from exc

    return {info["name"]: info for info in infos}


def get_json(url: str, timeout: float = 2.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode("utf-8"))


def log_tail(lab: Lab, program: str, lines: int = 5) -> str:
    path = lab.logs / f"{program}.log"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""

    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(f"    {line}" for line in tail)


def wait_running(lab: Lab, timeout: float = START_TIMEOUT) -> None:
    """Wait until every program is RUNNING and answers over HTTP; fail naming the one that
    does not."""
    expected = [ENTERPRISE_PROGRAM] + [p["program"] for p in lab.programs()]
    deadline = time.monotonic() + timeout
    while True:
        infos = process_infos(lab)
        missing = [name for name in expected if name not in infos]
        if missing:
            raise LabError(
                f"supervisord has no program {missing[0]}; the running lab was started with "
                "other hosts: run `labctl.py down` and `up` again"
            )

        for name in expected:
            state = infos[name]["statename"]
            if state in ("FATAL", "EXITED", "STOPPED", "UNKNOWN"):
                raise LabError(
                    f"program {name} is {state}: {infos[name]['spawnerr'] or 'see its log'}; "
                    f"once fixed, `labctl.py ctl start {name}`\n{log_tail(lab, name)}"
                )

        waiting = [name for name in expected if infos[name]["statename"] != "RUNNING"]
        if not waiting:
            break

        if time.monotonic() > deadline:
            name = waiting[0]
            raise LabError(
                f"program {name} is still {infos[name]['statename']} after {timeout:.0f} s"
            )

        time.sleep(0.25)

    endpoints = [(ENTERPRISE_PROGRAM, f"http://127.0.0.1:{lab.base_port}/manifest.json")]
    endpoints += [(p["program"], f"http://127.0.0.1:{p['port']}/status") for p in lab.programs()]
    for name, url in endpoints:
        while True:
            try:
                get_json(url)
                break
            except (OSError, ValueError) as exc:
                if time.monotonic() > deadline:
                    raise LabError(f"program {name} does not answer {url}: {exc}") from exc

                time.sleep(0.25)


# -- commands -----------------------------------------------------------------------------


def cmd_up(lab: Lab, args: argparse.Namespace) -> int:
    python = sys.executable
    if supervisord_pid(lab):
        saved = json.loads((lab.root / STATE_FILE).read_text(encoding="utf-8"))
        if saved != lab.state():
            print(
                "lab: already running with other settings; they stay until `labctl.py down` "
                "and `up`",
                file=sys.stderr,
            )
            lab = Lab(lab.root, saved["hosts"], saved["base_port"], saved["sim"])

        wait_running(lab, args.timeout)
        print(f"lab: already up in {lab.root}; every program answers")
        return 0

    if len(str(lab.sock)) > MAX_SOCKET_PATH:
        raise LabError(f"lab directory {lab.root} is too deep for a unix socket; use a shorter one")

    lab.root.mkdir(parents=True, exist_ok=True)
    (lab.root / STATE_FILE).write_text(json.dumps(lab.state(), indent=2) + "\n", encoding="utf-8")
    for sub in ("logs", "reports"):
        (lab.root / sub).mkdir(exist_ok=True)

    seed_enterprise(lab)
    for host in lab.hosts:
        install_host(lab, host)

    lab.conf.write_text(render_config(lab, python), encoding="utf-8")
    supervisord = Path(python).parent / "supervisord"
    if not supervisord.exists():
        raise LabError(f"{supervisord} is missing; run `make venv`")

    result = subprocess.run(
        [str(supervisord), "-c", str(lab.conf)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise LabError(
            f"supervisord failed to start (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()}"
        )

    deadline = time.monotonic() + args.timeout
    while not lab.sock.exists():
        if time.monotonic() > deadline:
            raise LabError(f"supervisord did not create {lab.sock}; see {lab.logs}/supervisord.log")

        time.sleep(0.1)

    wait_running(lab, args.timeout)
    print(f"lab: up in {lab.root}")
    print(f"lab: enterprise on http://127.0.0.1:{lab.base_port}/")
    for program in lab.programs():
        print(f"lab: {program['program']:<16} http://127.0.0.1:{program['port']}")

    return 0


def cmd_down(lab: Lab, args: argparse.Namespace) -> int:
    pid = supervisord_pid(lab)
    if pid is None:
        print(f"lab: not running in {lab.root}")
        return 0

    try:
        rpc(lab).supervisor.shutdown()
    except (OSError, xmlrpc.client.Error) as exc:
        raise LabError(f"cannot ask supervisord (pid {pid}) to shut down: {exc}") from exc

    deadline = time.monotonic() + args.timeout
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            raise LabError(f"supervisord (pid {pid}) is still running after {args.timeout:.0f} s")

        time.sleep(0.1)

    print(f"lab: down ({lab.root})")
    return 0


def cmd_reset(lab: Lab, args: argparse.Namespace) -> int:
    cmd_down(lab, args)
    if not lab.root.exists():
        print(f"lab: nothing to remove at {lab.root}")
        return 0

    # Only a directory that labctl made is removed, so a mistyped --lab-dir cannot wipe
    # something else.
    if not (lab.root / STATE_FILE).is_file() and any(lab.root.iterdir()):
        raise LabError(f"{lab.root} has no {STATE_FILE}; it is not a lab directory, not removing")

    shutil.rmtree(lab.root)
    print(f"lab: removed {lab.root}")
    return 0


def live_status(lab: Lab, program: dict) -> dict | None:
    try:
        return get_json(f"http://127.0.0.1:{program['port']}/status", timeout=1.0)
    except (OSError, ValueError):
        return None


def saved_dropped(lab: Lab, host: str, program: str) -> int | None:
    try:
        data = json.loads(lab.counters(host, program).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None

    return data.get("calls_dropped")


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_status(lab: Lab, args: argparse.Namespace) -> int:
    pid = supervisord_pid(lab)
    infos = process_infos(lab) if pid else {}
    print(f"lab: {lab.root} ({f'supervisord pid {pid}' if pid else 'not running'})")
    product = None
    try:
        manifest = json.loads((lab.dist / "manifest.json").read_text(encoding="utf-8"))
        product = manifest["product_version"]
        print(
            f"enterprise: product {product}, serial {manifest['serial']}, "
            f"patches {', '.join(manifest.get('patches', []))}"
        )
    except (OSError, ValueError, KeyError):
        print("enterprise: no distribution yet (run `labctl.py up`)")

    enterprise = infos.get(ENTERPRISE_PROGRAM, {})
    rows = [[ENTERPRISE_PROGRAM, enterprise.get("statename", "-"), lab.base_port, product]]
    rows[0] += [None] * 3
    all_running = bool(pid) and enterprise.get("statename") == "RUNNING"
    for program in lab.programs():
        state = infos.get(program["program"], {}).get("statename", "-")
        all_running = all_running and state == "RUNNING"
        live = live_status(lab, program) if state == "RUNNING" else None
        if live:
            busy = f"{live['ports_busy']}/{live['ports_total']}"
            row = [live["version"], busy, live["mode"], live["calls_dropped"]]
        else:
            dropped = saved_dropped(lab, program["host"], program["program"])
            row = [None, None, None, dropped]

        rows.append([program["program"], state, program["port"], *row])

    print(table(["program", "state", "port", "version", "busy", "mode", "dropped"], rows))
    return 0 if all_running else 1


def _seconds(value) -> str | None:
    if value is None or value == "":
        return None

    try:
        return f"{float(value):.1f}"
    except (TypeError, ValueError):
        return str(value)


def live_summary(lab: Lab, program: dict | None) -> tuple:
    """The version a service runs now and its dropped calls over every run, as far as known."""
    if program is None:
        return None, None

    live = live_status(lab, program)
    if live:
        return live["version"], live["calls_dropped"]

    return "(down)", saved_dropped(lab, program["host"], program["program"])


def report_rows(lab: Lab, host: str, report: dict) -> list[list]:
    """One row per service of the host, whether or not the run touched it."""
    programs = {p["service"]: p for p in lab.programs() if p["host"] == host}
    entries = {e.get("service"): e for e in report.get("services") or [] if isinstance(e, dict)}
    rows = []
    for service in list(programs) + [name for name in entries if name not in programs]:
        entry = entries.get(service, {})
        ids = f"{entry['old_id']} -> {entry['new_id']}" if "new_id" in entry else "unchanged"
        running, dropped_total = live_summary(lab, programs.get(service))
        rows.append(
            [
                service,
                entry.get("module"),
                ids,
                entry.get("version_reported"),
                _seconds(entry.get("wait_seconds")),
                _seconds(entry.get("downtime_seconds")),
                entry.get("calls_dropped"),
                entry.get("calls_turned_away"),
                running,
                dropped_total,
            ]
        )

    return rows


def cmd_report(lab: Lab, args: argparse.Namespace) -> int:
    hosts = list(lab.hosts)
    if lab.reports.is_dir():
        hosts += sorted(p.stem for p in lab.reports.glob("*.json") if p.stem not in hosts)

    headers = ["service", "module", "manifest id", "version", "wait s", "down s", "dropped"]
    headers += ["turned away", "running now", "dropped total"]
    outcomes: dict[str, list[str]] = {}
    for host in hosts:
        path = lab.reports / f"{host}.json"
        if not path.is_file():
            print(f"{host}: no report at {path} (the update has not run against this host)\n")
            outcomes.setdefault("no report", []).append(host)
            continue

        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            print(f"{host}: report {path} is not valid JSON: {exc}\n")
            outcomes.setdefault("unreadable", []).append(host)
            continue

        status = report.get("status") or "?"
        outcomes.setdefault(status, []).append(host)
        print(
            f"{host}: {status} (started {report.get('started') or '-'}, "
            f"finished {report.get('finished') or '-'})"
        )
        if report.get("msg"):
            print(f"  {report['msg']}")

        print(table(headers, report_rows(lab, host, report)))
        print()

    summary = "; ".join(f"{key} {', '.join(names)}" for key, names in sorted(outcomes.items()))
    print(f"lab: {summary}")
    return 0


def cmd_ctl(lab: Lab, args: argparse.Namespace) -> int:
    supervisorctl = Path(sys.executable).parent / "supervisorctl"
    ctl_args = args.ctl_args[1:] if args.ctl_args[:1] == ["--"] else args.ctl_args
    return subprocess.run(
        [str(supervisorctl), "-c", str(lab.conf), *ctl_args], check=False
    ).returncode


COMMANDS = {
    "up": cmd_up,
    "down": cmd_down,
    "status": cmd_status,
    "reset": cmd_reset,
    "report": cmd_report,
    "ctl": cmd_ctl,
}


def host_list(value: str) -> list[str]:
    hosts = [h.strip() for h in value.split(",") if h.strip()]
    bad = [h for h in hosts if not h.replace("-", "").replace("_", "").isalnum()]
    if not hosts or bad or len(set(hosts)) != len(hosts):
        raise argparse.ArgumentTypeError(
            f"expected distinct host names like ivr01,ivr02: {value!r}"
        )

    return hosts


def _number(kind, low: float, high: float, what: str):
    def parse(value: str):
        try:
            number = kind(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{what}, got {value!r}") from exc

        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{what}, got {value!r}")

        return number

    return parse


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--lab-dir",
        default=os.environ.get("PRAIRIEFYRE_LAB_DIR") or str(REPO / ".lab"),
        help="lab state directory (default: $PRAIRIEFYRE_LAB_DIR or <repo>/.lab)",
    )
    common.add_argument("--hosts", type=host_list, help="IVR hosts (default: ivr01,ivr02)")
    common.add_argument(
        "--base-port",
        type=_number(int, 1024, 65000, "expected a port from 1024 to 65000"),
        default=os.environ.get("PRAIRIEFYRE_LAB_BASE_PORT") or None,
        help="enterprise port; host i serves on BASE + 10*i + j "
        f"(default: $PRAIRIEFYRE_LAB_BASE_PORT or {DEFAULT_BASE_PORT})",
    )
    common.add_argument(
        "--ports", type=_number(int, 1, 256, "expected 1 to 256"), help="ports per service (4)"
    )
    common.add_argument(
        "--load",
        type=_number(float, 0.0, 0.99, "expected a share from 0 to 0.99"),
        help="share of time a port is busy (0.15)",
    )
    common.add_argument(
        "--mean-call",
        type=_number(float, 0.01, 86400, "expected seconds from 0.01 to 86400"),
        help="mean call length in simulated seconds (4)",
    )
    common.add_argument(
        "--time-scale",
        type=_number(float, 0.001, 100000, "expected a factor from 0.001 to 100000"),
        help="simulated seconds per real second (1)",
    )
    common.add_argument("--seed", type=int, help="make the simulated calls repeatable")
    common.add_argument(
        "--timeout", type=float, default=START_TIMEOUT, help="seconds to wait for start or stop"
    )

    parser = argparse.ArgumentParser(description="Run the prairiefyre.updater lab.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {
        "up": "seed the lab if needed and start it; idempotent",
        "down": "stop supervisord and every service",
        "status": "programs, versions, busy ports and dropped calls",
        "reset": "down, then remove the lab directory",
        "report": "summary of the update role's run reports with the live counters",
    }
    for name, text in helps.items():
        commands.add_parser(name, parents=[common], help=text, description=text)

    ctl = commands.add_parser(
        "ctl",
        parents=[common],
        help="run supervisorctl with the lab's configuration",
        description="Run supervisorctl with the lab's configuration, e.g. `ctl status`.",
    )
    ctl.add_argument("ctl_args", nargs=argparse.REMAINDER, help="supervisorctl arguments")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](resolve_lab(args), args)
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
