"""The lab: the IVR call engine on a fake clock, the simulator over real HTTP, and labctl."""

import codecs
import importlib
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import jinja2
import pytest
import yaml

import ivr_simulator as sim
import labctl

REPO = Path(__file__).resolve().parents[3]
SIMULATOR = REPO / "lab" / "ivr_simulator.py"
LABCTL = REPO / "lab" / "labctl.py"
INVENTORY = REPO / "inventory" / "lab"
STATUS_KEYS = {
    "service",
    "version",
    "pid",
    "ports_total",
    "ports_busy",
    "ports",
    "longest_call_seconds",
    "mode",
    "accepting",
    "lease",
    "drain",
    "calls_completed",
    "calls_dropped",
    "calls_deferred",
}


def engine(clock, ports=4, load=0.0, mean_call=10.0, **kwargs):
    return sim.CallEngine(ports, load, mean_call, clock, seed=kwargs.pop("seed", 7), **kwargs)


# -- the call engine ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ports", "load", "mean_call", "distribution"),
    [
        (16, 0.4, 180.0, "lognormal"),
        (16, 0.4, 180.0, "exponential"),
        (4, 0.15, 4.0, "lognormal"),
        (8, 0.7, 60.0, "exponential"),
        (2, 0.05, 30.0, "lognormal"),
    ],
)
def test_busy_share_converges_to_the_load(clock, ports, load, mean_call, distribution):
    calls = engine(clock, ports, load, mean_call, distribution=distribution, seed=11)
    cycle = mean_call / load
    step = mean_call / 3

    # About 3,000 busy-idle cycles per port; steps of a third of a call exercise the
    # incremental advance between requests, as the HTTP layer uses it.
    for _tick in range(int(3000 * cycle / step)):
        clock.advance(step)
        calls.advance()

    assert calls.busy_share() == pytest.approx(load, abs=0.025)
    assert calls.calls_deferred == 0


@pytest.mark.parametrize("sigma", [0.5, 0.8, 1.2])
def test_lognormal_calls_keep_their_mean_whatever_the_tail(clock, sigma):
    calls = engine(clock, mean_call=200.0, sigma=sigma, seed=3)

    lengths = [calls._call_length() for _call in range(40000)]

    assert sum(lengths) / len(lengths) == pytest.approx(200.0, rel=0.05)


def test_load_zero_never_takes_a_call(clock):
    calls = engine(clock, load=0.0)

    clock.advance(1e6)
    status = calls.status()

    assert (status["ports_busy"], calls.calls_started, calls.busy_share()) == (0, 0, 0.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ports": 0}, "ports must be at least 1, got 0"),
        ({"load": 1.0}, "load must be in [0, 1), got 1.0"),
        ({"load": -0.1}, "load must be in [0, 1), got -0.1"),
        ({"mean_call": 0}, "mean call length must be positive, got 0"),
        ({"distribution": "pareto"}, "unknown call length distribution 'pareto'"),
        ({"sigma": 0}, "sigma of the call lengths must be positive, got 0"),
    ],
)
def test_engine_refuses_bad_settings(clock, kwargs, message):
    with pytest.raises(ValueError) as raised:
        engine(clock, **kwargs)

    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("held", "granted", "reason"),
    [
        (0, True, None),
        (1, False, "1 of 4 ports busy"),
        (4, False, "4 of 4 ports busy"),
    ],
)
def test_permission_only_when_every_port_is_idle(clock, held, granted, reason):
    calls = engine(clock)
    if held:
        calls.hold(held, 60)

    answer = calls.request_permission(lease_seconds=120)

    assert (answer["granted"], answer.get("reason")) == (granted, reason)
    assert answer["mode"] == ("leased" if granted else "open")
    assert (answer["lease"] or {}).get("expires_in") == (120.0 if granted else None)


def test_lease_blocks_new_calls_until_it_expires(clock):
    calls = engine(clock, ports=4, load=0.9, mean_call=5.0, start_busy=False)
    answer = calls.request_permission(lease_seconds=300)
    assert answer["granted"] is True

    clock.advance(299)
    during = calls.status()

    assert (during["mode"], during["ports_busy"], during["accepting"]) == ("leased", 0, False)
    assert during["lease"]["expires_in"] == 1.0
    assert calls.calls_deferred > 50

    clock.advance(2)
    after = calls.status()

    assert (after["mode"], after["lease"], calls.leases_expired) == ("open", None, 1)

    clock.advance(60)

    assert calls.calls_started > 0


def test_second_permission_is_refused_while_leased(clock):
    calls = engine(clock)
    first = calls.request_permission(lease_seconds=100)

    second = calls.request_permission(lease_seconds=100)

    assert first["granted"] is True
    assert (second["granted"], second["reason"]) == (
        False,
        "already leased, lease expires in 100.0 s",
    )
    assert second["lease"]["id"] == first["lease"]["id"]


def test_drain_stops_new_calls_and_grants_once_idle(clock):
    calls = engine(clock, ports=4, load=0.5, mean_call=5.0, start_busy=False)
    calls.hold(2, 30)

    first = calls.drain(deadline_seconds=100, lease_seconds=60)
    clock.advance(10)
    polled = calls.drain(deadline_seconds=100, lease_seconds=60)

    assert (first["granted"], first["reason"]) == (False, "2 of 4 ports busy, draining")
    assert first["drain"] == {"deadline_in": 100.0}
    assert (polled["mode"], polled["drain"]) == ("draining", {"deadline_in": 90.0})
    assert polled["ports_busy"] == 2

    clock.advance(20.5)
    granted = calls.drain(deadline_seconds=100, lease_seconds=60)

    assert (granted["granted"], granted["mode"], granted["drain"]) == (True, "leased", None)
    assert granted["lease"]["expires_in"] == 60.0
    assert calls.calls_started == 2
    assert calls.calls_deferred > 0


def test_drain_expires_at_its_deadline_and_reports_it_once(clock):
    calls = engine(clock)
    calls.hold(1, 1000)
    calls.drain(deadline_seconds=30)

    clock.advance(29.9)
    before = calls.status()
    clock.advance(0.2)
    after = calls.status()
    reported = calls.drain(deadline_seconds=30)
    again = calls.drain(deadline_seconds=30)

    assert (before["mode"], after["mode"], after["accepting"]) == ("draining", "open", True)
    assert (reported["granted"], reported["drain_expired"], reported["mode"]) == (
        False,
        True,
        "open",
    )
    assert "drain_expired" not in again
    assert (again["mode"], calls.drains_expired) == ("draining", 1)


def test_permission_during_a_drain_grants_once_idle(clock):
    calls = engine(clock)
    calls.hold(1, 10)
    calls.drain(deadline_seconds=100)

    clock.advance(11)
    answer = calls.request_permission(lease_seconds=50)

    assert (answer["granted"], answer["mode"], answer["drain"]) == (True, "leased", None)


@pytest.mark.parametrize(
    ("setup", "lease_id", "released", "reason"),
    [
        ("open", "abc", False, "no lease is held"),
        ("leased", "wrong", False, "lease_id does not match the lease held"),
        ("leased", None, False, "a lease is held; give its lease_id to release it"),
        ("leased", "right", True, None),
        ("draining", None, True, "drain cancelled"),
    ],
)
def test_release(clock, setup, lease_id, released, reason):
    calls = engine(clock)
    if setup == "leased":
        lease = calls.request_permission()["lease"]["id"]
        lease_id = lease if lease_id == "right" else lease_id
    elif setup == "draining":
        calls.hold(1, 100)
        calls.drain()

    answer = calls.release(lease_id)

    assert (answer["released"], answer.get("reason")) == (released, reason)
    assert answer["mode"] == ("leased" if setup == "leased" and not released else "open")


def test_stop_drops_every_call_in_progress(clock):
    calls = engine(clock, ports=8, load=0.5, mean_call=50.0, start_busy=False)
    calls.hold(3, 1000)
    clock.advance(20)
    busy = calls.status()["ports_busy"]

    dropped = calls.stop()
    clock.advance(1000)
    after = calls.status()

    assert busy >= 3
    assert (dropped, calls.calls_dropped) == (busy, busy)
    assert (after["ports_busy"], after["accepting"], after["calls_dropped"]) == (0, False, busy)


def test_hold_prefers_idle_ports_and_extends_busy_ones(clock):
    calls = engine(clock)
    assert calls.hold(2, 10) == [1, 2]

    held = calls.hold(4, 5)
    clock.advance(6)
    status = calls.status()

    assert held == [1, 2, 3, 4]
    assert [p["busy"] for p in status["ports"]] == [True, True, False, False]
    assert status["longest_call_seconds"] == 6.0


@pytest.mark.parametrize(
    ("ports", "seconds", "message"),
    [
        (0, 10, "ports must be an integer of at least 1, got 0"),
        (5, 10, "ports must be at most 4, got 5"),
        ("2", 10, "ports must be an integer of at least 1, got '2'"),
        (True, 10, "ports must be an integer of at least 1, got True"),
        (1, 0, "seconds must be between 0 and 604800 seconds, got 0"),
        (1, "x", "seconds must be a number of seconds, got 'x'"),
    ],
)
def test_hold_refuses_bad_input(clock, ports, seconds, message):
    with pytest.raises(sim.RequestError) as raised:
        engine(clock).hold(ports, seconds)

    assert str(raised.value) == message


def test_hang_up_ends_held_calls_as_completed(clock):
    calls = engine(clock)
    calls.hold(2, 1000)
    refused = calls.request_permission(900)

    ended = calls.hang_up([2, 1, 3])
    granted = calls.request_permission(900)

    assert (refused["granted"], ended, granted["granted"]) == (False, [1, 2], True)
    assert (calls.calls_completed, calls.calls_dropped) == (2, 0)


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ([], "ports must be a non-empty list of port numbers, got []"),
        (1, "ports must be a non-empty list of port numbers, got 1"),
        ([5], "no port 5; ports are 1 to 4"),
        ([True], "no port True; ports are 1 to 4"),
        (["1"], "no port '1'; ports are 1 to 4"),
    ],
)
def test_hang_up_refuses_bad_input(clock, ports, message):
    with pytest.raises(sim.RequestError) as raised:
        engine(clock).hang_up(ports)

    assert str(raised.value) == message


def test_engine_is_repeatable_with_a_seed(new_clock):
    runs = []
    for _run in range(2):
        clock = new_clock()
        calls = engine(clock, ports=16, load=0.4, mean_call=180.0, seed=3)
        clock.advance(3600)
        runs.append((calls.status()["ports"], calls.calls_completed))

    assert runs[0] == runs[1]
    assert runs[0][1] > 0


# -- the simulator over HTTP --------------------------------------------------------------


class Service:
    """A simulator subprocess on a free loopback port."""

    def __init__(self, tmp: Path, port: int, *extra: str, token: str | None = None) -> None:
        self.install = tmp / "install"
        self.counters = tmp / "counters.json"
        self.token = token
        self.extra = extra
        self.proc = None
        self.port = port

    def start(self) -> "Service":
        command = [
            sys.executable,
            str(SIMULATOR),
            "--service",
            "IVR Inbound",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--install-dir",
            str(self.install),
            "--counters",
            str(self.counters),
            "--ports",
            "4",
            "--load",
            "0",
            *self.extra,
        ]
        if self.token:
            command += ["--token", self.token]

        self.proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.request("GET", "/status")
                return self
            except (urllib.error.URLError, ConnectionError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    message = f"simulator did not start: {self.proc.stderr.read()}"
                    raise AssertionError(message) from None

                time.sleep(0.05)

    def request(self, method, path, body=None, token="default", raw=None):
        token = self.token if token == "default" else token
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method
        )
        if token:
            request.add_header("Authorization", f"Bearer {token}")

        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read()), response.headers
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read()), error.headers

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

        if self.proc:
            self.proc.stderr.close()


@pytest.fixture
def service_factory(tmp_path, free_port):
    started = []
    (tmp_path / "install").mkdir()
    (tmp_path / "install" / "version.txt").write_text("6.3.1.0\n", encoding="utf-8")

    def factory(*extra, token=None):
        service = Service(tmp_path, free_port(), *extra, token=token)
        started.append(service)
        return service

    yield factory
    for service in started:
        service.close()


def test_status_reports_the_contract_fields(service_factory):
    service = service_factory().start()

    code, status, headers = service.request("GET", "/status")

    assert (code, headers["Content-Type"]) == (200, "application/json")
    assert set(status) == STATUS_KEYS
    assert (status["service"], status["version"], status["pid"]) == (
        "IVR Inbound",
        "6.3.1.0",
        service.proc.pid,
    )
    assert (status["ports_total"], status["ports_busy"], status["mode"]) == (4, 0, "open")
    assert status["ports"][0] == {"port": 1, "busy": False, "call_seconds": 0.0}


@pytest.mark.parametrize(
    ("token", "code"),
    [(None, 401), ("wrong", 401), ("s3cret", 200)],
)
def test_token_is_required_on_every_request(service_factory, token, code):
    service = service_factory(token="s3cret").start()

    for method, path, body in (("GET", "/status", None), ("POST", "/permission", {})):
        got, answer, headers = service.request(method, path, body, token=token)

        assert got == code
        if code == 401:
            assert answer == {"error": "missing or wrong bearer token"}
            assert headers["WWW-Authenticate"].startswith("Bearer")


BAD_REQUESTS = [
    ("POST", "/permission", b"{not json", 400, "request body is not valid JSON"),
    ("POST", "/permission", b"[1, 2]", 400, "request body must be a JSON object"),
    (
        "POST",
        "/permission",
        b'{"lease_secs": 5}',
        400,
        "unknown field 'lease_secs'; expected one of ['lease_seconds']",
    ),
    (
        "POST",
        "/permission",
        b'{"lease_seconds": -5}',
        400,
        "lease_seconds must be between 0 and 604800 seconds, got -5",
    ),
    (
        "POST",
        "/drain",
        b'{"deadline_seconds": "soon"}',
        400,
        "deadline_seconds must be a number of seconds, got 'soon'",
    ),
    ("POST", "/release", b'{"lease_id": 5}', 400, "lease_id must be a string, got 5"),
    ("POST", "/admin/hold", b'{"ports": 9, "seconds": 5}', 400, "ports must be at most 4"),
    ("GET", "/permission", None, 405, "GET not allowed"),
    ("GET", "/nope", None, 404, "no such endpoint /nope"),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[f"{c[1]}-{c[3]}" for c in BAD_REQUESTS])
def test_bad_requests_get_a_json_error(service_factory, case):
    method, path, raw, code, error = case
    service = service_factory().start()

    got, answer, _headers = service.request(method, path, raw=raw)

    assert got == code
    assert set(answer) == {"error"}
    assert answer["error"].startswith(error)


def test_permission_drain_and_release_over_http(service_factory):
    # 50 simulated seconds per real second: a held call of 25 s ends after half a second.
    service = service_factory("--time-scale", "50").start()
    service.request("POST", "/admin/hold", {"ports": 2, "seconds": 25})

    _status, refused, _headers = service.request("POST", "/permission", {"lease_seconds": 600})
    _status, draining, _headers = service.request("POST", "/drain", {"deadline_seconds": 6000})
    deadline = time.monotonic() + 5
    granted = draining
    while not granted["granted"] and time.monotonic() < deadline:
        time.sleep(0.1)
        _status, granted, _headers = service.request("POST", "/drain", {"deadline_seconds": 6000})

    _status, second, _headers = service.request("POST", "/permission", {})
    _status, wrong, _headers = service.request("POST", "/release", {"lease_id": "not-it"})
    _status, released, _headers = service.request(
        "POST", "/release", {"lease_id": granted["lease"]["id"]}
    )

    assert (refused["granted"], refused["reason"]) == (False, "2 of 4 ports busy")
    assert (draining["granted"], draining["mode"]) == (False, "draining")
    assert (granted["granted"], granted["mode"], granted["ports_busy"]) == (True, "leased", 0)
    assert second["granted"] is False
    assert (wrong["released"], wrong["mode"]) == (False, "leased")
    assert (released["released"], released["mode"], released["accepting"]) == (True, "open", True)


def test_drain_expires_over_http(service_factory):
    service = service_factory("--time-scale", "100").start()
    service.request("POST", "/admin/hold", {"ports": 1, "seconds": 100000})

    service.request("POST", "/drain", {"deadline_seconds": 30})
    time.sleep(0.5)
    _status, expired, _headers = service.request("POST", "/drain", {"deadline_seconds": 30})

    assert (expired["granted"], expired["drain_expired"], expired["mode"]) == (False, True, "open")


def test_sigterm_adds_dropped_calls_to_the_counters_file(service_factory):
    first = service_factory().start()
    first.request("POST", "/admin/hold", {"ports": 3, "seconds": 6000})

    first_exit = first.stop()
    after_first = json.loads(first.counters.read_text(encoding="utf-8"))
    second = service_factory().start()
    _code, status, _headers = second.request("GET", "/status")
    second.request("POST", "/admin/hold", {"ports": 1, "seconds": 6000})
    second_exit = second.stop()
    after_second = json.loads(second.counters.read_text(encoding="utf-8"))

    assert first_exit == 0
    assert (after_first["calls_dropped"], after_first["runs"]) == (3, 1)
    assert status["calls_dropped"] == 3
    assert second_exit == 0
    assert (after_second["calls_dropped"], after_second["runs"]) == (4, 2)
    assert "1 call(s) dropped, 4 in total" in second.proc.stderr.read()
    assert [p.name for p in first.counters.parent.glob(".counters-*")] == []


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("broken", "refusing to start: {install}/BROKEN exists"),
        ("no_version", "refusing to start: cannot read {install}/version.txt"),
        ("empty_version", "refusing to start: {install}/version.txt is empty"),
    ],
)
def test_refuses_to_start_with_exit_3(tmp_path, setup, message):
    install = tmp_path / "install"
    install.mkdir()
    if setup != "no_version":
        content = "" if setup == "empty_version" else "6.3.1.0\n"
        (install / "version.txt").write_text(content, encoding="utf-8")

    if setup == "broken":
        (install / "BROKEN").touch()

    result = subprocess.run(
        [sys.executable, str(SIMULATOR), "--service", "IVR UpIQ", "--install-dir", str(install)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 3
    assert message.format(install=install) in result.stderr


# -- labctl and the lab inventory ---------------------------------------------------------


def render(template, **variables):
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.globals["lookup"] = lambda *args: ""
    return env.from_string(str(template)).render(**variables)


def load_yaml(*parts):
    return yaml.safe_load(INVENTORY.joinpath(*parts).read_text(encoding="utf-8"))


def test_inventory_ports_and_units_follow_labctl():
    hosts = list(load_yaml("hosts.yml")["all"]["children"]["ivr_servers"]["hosts"])
    base = int(render(load_yaml("group_vars", "all.yml")["lab_base_port"]))
    services = load_yaml("group_vars", "ivr_servers.yml")["remote_ivr_update_services"]

    from_inventory = []
    for host in hosts:
        index = load_yaml("host_vars", f"{host}.yml")["lab_index"]
        for service in services:
            values = {"inventory_hostname": host, "lab_base_port": base, "lab_index": index}
            url = render(service["status_url"], **values)
            from_inventory.append((host, service["name"], render(service["unit"], **values), url))

    expected = [
        (p["host"], p["service"], p["program"], f"http://127.0.0.1:{p['port']}")
        for p in labctl.layout(hosts, labctl.DEFAULT_BASE_PORT)
    ]
    assert base == labctl.DEFAULT_BASE_PORT
    assert hosts == list(labctl.DEFAULT_HOSTS)
    assert from_inventory == expected


@pytest.mark.parametrize(
    ("host_index", "offset", "port"),
    [(1, 0, 18610), (1, 2, 18612), (2, 1, 18621), (3, 2, 18632)],
)
def test_service_port_formula(host_index, offset, port):
    assert labctl.service_port(18600, host_index, offset) == port


def test_config_escapes_percent_and_keeps_failed_services_down(tmp_path):
    lab = labctl.Lab(tmp_path / "100%lab", ["ivr01"], 19600, dict(labctl.DEFAULT_SIM))

    conf = labctl.render_config(lab, "/venv/bin/python")
    programs = re.findall(r"^\[program:(\S+)\]$", conf, re.MULTILINE)

    assert programs == ["enterprise_http", "ivr01_inbound", "ivr01_outbound", "ivr01_upiq"]
    assert "100%lab" not in conf.replace("100%%lab", "")
    assert conf.count("autorestart=false") == conf.count("startretries=0") == 4
    assert "--listen 127.0.0.1:19611 " in conf
    assert "--service 'IVR Outbound'" in conf
    assert "-m http.server --bind 127.0.0.1 19600 --directory" in conf


def test_seed_builds_the_enterprise_and_installs_hosts(tmp_path, make_bundle):
    bundle = make_bundle(tmp_path / "bundle")
    lab = labctl.Lab(tmp_path / "lab", ["ivr01"], 19600, dict(labctl.DEFAULT_SIM))
    lab.root.mkdir()

    labctl.seed_enterprise(lab, labctl.load_apply_patch(), bundle)
    labctl.install_host(lab, "ivr01")
    install = lab.install_root("ivr01")
    record = json.loads((install / ".updater" / "manifest.json").read_text(encoding="utf-8"))
    log = (install / "CCM" / "Logs" / "UpdaterService.log").read_bytes()

    assert (install / "IVR" / "UpIQ" / "version.txt").read_text(encoding="utf-8") == "6.3.1.0\n"
    assert (install / "IVR" / "Inbound" / "Prompts" / "welcome.txt").is_file()
    assert set(record) == {"format", "serial", "modules"}
    assert {name: m["manifest_id"] for name, m in record["modules"].items()} == {
        "ivr_inbound": 1000,
        "ivr_outbound": 2000,
        "ivr_upiq": 3000,
    }
    assert log.startswith(codecs.BOM_UTF8)
    assert log.count(b"\r\n") == len(log.splitlines()) == 4
    assert re.search(
        rb"^Info      \d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}:\d{2} [AP]M     Loaded PostTask: "
        rb"Assembly prairieFyre.Updater.Tasks, Version=6.3.1.0, Culture=neutral, "
        rb"PublicKeyToken=null\r$",
        log,
        re.MULTILINE,
    )
    assert not (tmp_path / "lab" / "hosts" / "ivr01.partial").exists()


def test_seeded_log_reads_back_with_the_collections_parser(tmp_path):
    labctl.load_apply_patch()
    updater_log = importlib.import_module(
        "ansible_collections.prairiefyre.updater.plugins.module_utils.updater_log"
    )

    path = tmp_path / "UpdaterService.log"
    labctl.seed_log(path, "6.3.1.0", labctl.datetime(2026, 12, 4, 15, 0, 0))

    summary = updater_log.read_log(str(path))

    assert (summary["entries"], summary["skipped_lines"]) == (4, 0)
    assert summary["post_task"]["version"] == "6.3.1.0"


def run_labctl(lab_dir, command, *args, ctl=False):
    # ctl hands everything after its own options to supervisorctl, so --lab-dir goes first.
    where = ["--lab-dir", str(lab_dir)]
    argv = [command, *where, *args] if ctl else [command, *args, *where]
    return subprocess.run(
        [sys.executable, str(LABCTL), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_reset_refuses_a_directory_it_did_not_make(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me", encoding="utf-8")

    result = run_labctl(tmp_path, "reset")

    assert result.returncode == 1
    assert "has no lab.json; it is not a lab directory, not removing" in result.stderr
    assert (tmp_path / "precious.txt").exists()


@pytest.mark.skipif(
    not (Path(sys.executable).parent / "supervisord").exists(), reason="needs the venv"
)
def test_lab_up_stop_start_report_down(tmp_path, make_bundle, free_base_port):
    base = free_base_port(hosts=1)
    lab_dir = tmp_path / "lab"
    lab = labctl.Lab(lab_dir, ["ivr01"], base, dict(labctl.DEFAULT_SIM))
    lab_dir.mkdir()
    labctl.seed_enterprise(lab, labctl.load_apply_patch(), make_bundle(tmp_path / "bundle"))
    common = ["--hosts", "ivr01", "--base-port", str(base), "--load", "0"]

    try:
        up = run_labctl(lab_dir, "up", *common)
        again = run_labctl(lab_dir, "up")
        status = run_labctl(lab_dir, "status")
        run_labctl(lab_dir, "ctl", "stop", "ivr01_upiq", ctl=True)
        stopped = run_labctl(lab_dir, "status")
        counters = json.loads(lab.counters("ivr01", "ivr01_upiq").read_text(encoding="utf-8"))
        (lab.install_root("ivr01") / "IVR" / "UpIQ" / "BROKEN").touch()
        failed = run_labctl(lab_dir, "ctl", "start", "ivr01_upiq", ctl=True)
        no_report = run_labctl(lab_dir, "report")
        report = {
            "host": "ivr01",
            "started": "2026-12-04T15:00:00Z",
            "finished": "2026-12-04T15:01:00Z",
            "status": "updated",
            "msg": "ivr01 updated 1 module.",
            "services": [
                {
                    "service": "IVR Inbound",
                    "module": "ivr_inbound",
                    "old_id": 1000,
                    "new_id": 1001,
                    "version_reported": "6.3.2.0",
                    "wait_seconds": 4.3,
                    "downtime_seconds": 1.5,
                    "calls_dropped": 0,
                    "calls_turned_away": 3,
                }
            ],
        }
        (lab_dir / "reports" / "ivr01.json").write_text(json.dumps(report), encoding="utf-8")
        reported = run_labctl(lab_dir, "report")
    finally:
        down = run_labctl(lab_dir, "down")

    assert up.returncode == 0, up.stderr
    assert f"ivr01_inbound    http://127.0.0.1:{base + 10}" in up.stdout
    assert (again.returncode, again.stdout.strip().endswith("every program answers")) == (0, True)
    assert status.returncode == 0
    assert re.search(
        rf"ivr01_upiq\s+RUNNING\s+{base + 12}\s+6\.3\.1\.0\s+0/4\s+open\s+0", status.stdout
    )
    assert stopped.returncode == 1
    assert re.search(r"ivr01_upiq\s+STOPPED\s+\d+\s+-\s+-\s+-\s+0", stopped.stdout)
    assert (counters["calls_dropped"], counters["runs"]) == (0, 1)
    assert failed.returncode != 0
    assert "ivr01_upiq: ERROR (spawn error)" in failed.stdout
    assert "ivr01: no report at" in no_report.stdout
    assert reported.returncode == 0
    assert "ivr01: updated (started 2026-12-04T15:00:00Z" in reported.stdout
    assert re.search(
        r"IVR Inbound\s+ivr_inbound\s+1000 -> 1001\s+6\.3\.2\.0\s+4\.3\s+1\.5\s+0\s+3\s+6\.3\.1\.0"
        r"\s+0",
        reported.stdout,
    )
    assert re.search(r"IVR UpIQ\s+-\s+unchanged(\s+-){5}\s+\(down\)\s+0", reported.stdout)
    assert reported.stdout.rstrip().endswith("lab: updated ivr01")
    assert down.returncode == 0
    assert labctl.supervisord_pid(lab) is None
    assert "lab: down" in down.stdout
