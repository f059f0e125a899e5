"""Simulate one IVR service of the contact-center product for the lab.

One process stands for one service (IVR Inbound, IVR Outbound or IVR UpIQ): it has a number of
telephone ports that take random calls, answers the port-status, permission, drain and release
requests of docs/architecture.md on a loopback HTTP port, reports the version it loaded at start
and counts every call that a stop cut off.

The call model lives in CallEngine, which knows nothing about HTTP or real time: it reads
simulated seconds from a clock callable, so tests and the benchmark drive it with a fake clock.

Lab-only extensions, not part of the product's API: ``POST /admin/hold {"ports": 3, "seconds":
60}`` makes that many ports busy with calls of that length, whatever the mode, so that tests can
put a service into a known busy state, and ``POST /admin/hangup {"ports": [1, 3]}`` ends the
calls on those ports at once, so that a test decides when a held service goes idle.

Standard library only: the lab must run wherever the collection's venv runs.
"""

from __future__ import annotations

import argparse
import hmac
import json
import math
import os
import random
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EXIT_REFUSED = 3
EXIT_BIND_FAILED = 4
MAX_BODY_BYTES = 64 * 1024
MAX_SECONDS = 7 * 24 * 3600
DEFAULT_LEASE_SECONDS = 900
DEFAULT_DRAIN_DEADLINE_SECONDS = 1800
LOGNORMAL_SIGMA = 0.8
COUNTERS_FORMAT = 1


class RequestError(ValueError):
    """A request that the simulator refuses with 400 and the message as its error."""


class Port:
    """One telephone port: idle, or busy with a call from start to end (simulated seconds)."""

    __slots__ = ("number", "start", "end", "next_arrival")

    def __init__(self, number: int) -> None:
        self.number = number
        self.start: float | None = None
        self.end: float | None = None
        self.next_arrival: float | None = None

    @property
    def busy(self) -> bool:
        return self.end is not None


class CallEngine:
    """The ports, their random calls and the service's mode (open, leased or draining).

    Each port alternates between a call and an idle gap. Gaps are exponential with the mean that
    makes the long-run busy share equal ``load``: for a mean call m, the mean gap is
    m * (1 - load) / load. A call that arrives while the service is not open is turned away and
    counted in ``calls_deferred``; the port then waits for the next arrival.

    Every public method first advances the simulation to the clock's time, processing events in
    time order, so that a lease that expired between two requests reopened the service at its
    expiry and not at the next request. The engine is not thread-safe; the HTTP layer holds a
    lock around it.
    """

    def __init__(
        self,
        ports: int,
        load: float,
        mean_call: float,
        clock,
        *,
        seed: int | None = None,
        distribution: str = "lognormal",
        start_busy: bool = True,
        sigma: float = LOGNORMAL_SIGMA,
    ) -> None:
        if ports < 1:
            raise ValueError(f"ports must be at least 1, got {ports}")

        if not 0 <= load < 1:
            raise ValueError(f"load must be in [0, 1), got {load}")

        if mean_call <= 0:
            raise ValueError(f"mean call length must be positive, got {mean_call}")

        if distribution not in ("exponential", "lognormal"):
            raise ValueError(f"unknown call length distribution {distribution!r}")

        if sigma <= 0:
            raise ValueError(f"sigma of the call lengths must be positive, got {sigma}")

        self.load = load
        self.sigma = sigma
        self.mean_call = mean_call
        self.distribution = distribution
        self._clock = clock
        self._rng = random.Random(seed)
        self._arrival_rate = load / (mean_call * (1 - load)) if load > 0 else 0.0
        self.now = float(clock())
        self.ports = [Port(n) for n in range(1, ports + 1)]
        self.mode = "open"
        self.lease_id: str | None = None
        self.lease_expires: float | None = None
        self.drain_deadline: float | None = None
        self.drain_expired_unreported = False
        self.stopped = False
        self.calls_started = 0
        self.calls_completed = 0
        self.calls_dropped = 0
        self.calls_deferred = 0
        self.leases_granted = 0
        self.leases_expired = 0
        self.drains_expired = 0
        self.busy_port_seconds = 0.0
        self.started_at = self.now

        # Starting each port busy with probability `load` puts the lab straight into its
        # long-run state instead of making the demo wait for the first calls.
        for port in self.ports:
            if start_busy and self._rng.random() < load:
                length = self._call_length()
                age = self._rng.random() * length
                port.start = self.now - age
                port.end = self.now + length - age
                self.calls_started += 1
            else:
                self._schedule_arrival(port, self.now)

    # -- random draws ---------------------------------------------------------------------

    def _call_length(self) -> float:
        if self.distribution == "exponential":
            return self._rng.expovariate(1 / self.mean_call)

        # This mu keeps the mean at mean_call whatever sigma, the spread of the tail, is.
        mu = math.log(self.mean_call) - self.sigma**2 / 2
        return self._rng.lognormvariate(mu, self.sigma)

    def _schedule_arrival(self, port: Port, after: float) -> None:
        if self._arrival_rate > 0:
            port.next_arrival = after + self._rng.expovariate(self._arrival_rate)
        else:
            port.next_arrival = None

    # -- event loop ---------------------------------------------------------------------

    def _next_event(self) -> tuple[float, str, Port | None] | None:
        best: tuple[float, str, Port | None] | None = None
        candidates: list[tuple[float, str, Port | None]] = []
        if self.lease_expires is not None:
            candidates.append((self.lease_expires, "lease_expired", None))

        if self.drain_deadline is not None:
            candidates.append((self.drain_deadline, "drain_expired", None))

        for port in self.ports:
            if port.end is not None:
                candidates.append((port.end, "call_end", port))
            elif port.next_arrival is not None:
                candidates.append((port.next_arrival, "arrival", port))

        for candidate in candidates:
            if best is None or candidate[0] < best[0]:
                best = candidate

        return best

    def _add_busy_time(self, until: float) -> None:
        for port in self.ports:
            if port.end is not None and port.start is not None:
                self.busy_port_seconds += until - max(port.start, self.now)

    def advance(self) -> float:
        """Process every event up to the clock's time and return that time."""
        target = float(self._clock())
        if self.stopped or target <= self.now:
            return self.now

        while True:
            event = self._next_event()
            if event is None or event[0] > target:
                break

            when, kind, port = event
            self._add_busy_time(when)
            self.now = when
            self._handle(kind, port)

        self._add_busy_time(target)
        self.now = target
        return self.now

    def _handle(self, kind: str, port: Port | None) -> None:
        if kind == "lease_expired":
            self.leases_expired += 1
            self._reopen()
        elif kind == "drain_expired":
            self.drains_expired += 1
            self.drain_expired_unreported = True
            self._reopen()
        elif kind == "call_end":
            port.start = None
            port.end = None
            self.calls_completed += 1
            self._schedule_arrival(port, self.now)
        elif self.mode == "open":
            port.start = self.now
            port.end = self.now + self._call_length()
            port.next_arrival = None
            self.calls_started += 1
        else:
            self.calls_deferred += 1
            self._schedule_arrival(port, self.now)

    def _reopen(self) -> None:
        self.mode = "open"
        self.lease_id = None
        self.lease_expires = None
        self.drain_deadline = None

    # -- queries ------------------------------------------------------------------------

    def busy_ports(self) -> list[Port]:
        return [port for port in self.ports if port.busy]

    def busy_share(self) -> float:
        """Share of port time spent in calls since the engine started."""
        elapsed = (self.now - self.started_at) * len(self.ports)
        return self.busy_port_seconds / elapsed if elapsed > 0 else 0.0

    def status(self) -> dict:
        self.advance()
        ports = []
        for port in self.ports:
            seconds = self.now - port.start if port.busy else 0.0
            ports.append({"port": port.number, "busy": port.busy, "call_seconds": _r(seconds)})

        lease = None
        if self.mode == "leased":
            lease = {"id": self.lease_id, "expires_in": _r(self.lease_expires - self.now)}

        drain = None
        if self.mode == "draining":
            drain = {"deadline_in": _r(self.drain_deadline - self.now)}

        return {
            "ports_total": len(self.ports),
            "ports_busy": sum(1 for port in self.ports if port.busy),
            "ports": ports,
            "longest_call_seconds": max((p["call_seconds"] for p in ports), default=0.0),
            "mode": self.mode,
            "accepting": self.mode == "open" and not self.stopped,
            "lease": lease,
            "drain": drain,
            "calls_completed": self.calls_completed,
            "calls_dropped": self.calls_dropped,
            "calls_deferred": self.calls_deferred,
        }

    # -- requests -----------------------------------------------------------------------

    def _busy_reason(self) -> str | None:
        busy = len(self.busy_ports())
        if busy:
            return f"{busy} of {len(self.ports)} ports busy"

        return None

    def _grant(self, lease_seconds: float) -> dict:
        self.mode = "leased"
        self.lease_id = uuid.uuid4().hex
        self.lease_expires = self.now + lease_seconds
        self.drain_deadline = None
        self.drain_expired_unreported = False
        self.leases_granted += 1
        return {"granted": True, **self.status()}

    def request_permission(self, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> dict:
        """Grant a lease when every port is idle; a drain in progress goes on otherwise."""
        _check_seconds("lease_seconds", lease_seconds)
        self.advance()
        if self.mode == "leased":
            return self._refusal(f"already leased, lease expires in {self._lease_left()} s")

        reason = self._busy_reason()
        if reason:
            return self._refusal(reason)

        return self._grant(lease_seconds)

    def drain(
        self,
        deadline_seconds: float = DEFAULT_DRAIN_DEADLINE_SECONDS,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> dict:
        """Stop new calls and grant a lease once the ports are idle, within the deadline.

        A repeated drain keeps the first deadline, so an updater polling in a loop cannot push
        it out. The first drain request after a deadline passed reports ``drain_expired`` and
        does not start a new drain: the caller decides whether to try again.
        """
        _check_seconds("deadline_seconds", deadline_seconds)
        _check_seconds("lease_seconds", lease_seconds)
        self.advance()
        if self.drain_expired_unreported:
            self.drain_expired_unreported = False
            result = self._refusal("drain deadline passed before the ports were idle")
            result["drain_expired"] = True
            return result

        if self.mode == "leased":
            return self._refusal(f"already leased, lease expires in {self._lease_left()} s")

        reason = self._busy_reason()
        if not reason:
            return self._grant(lease_seconds)

        if self.mode == "open":
            self.mode = "draining"
            self.drain_deadline = self.now + deadline_seconds

        return self._refusal(f"{reason}, draining")

    def release(self, lease_id: str | None = None) -> dict:
        """End a lease, or cancel a drain; the service takes calls again."""
        self.advance()
        self.drain_expired_unreported = False
        if self.mode == "draining":
            self._reopen()
            return {"released": True, "reason": "drain cancelled", **self.status()}

        if self.mode != "leased":
            return {"released": False, "reason": "no lease is held", **self.status()}

        if lease_id != self.lease_id:
            reason = "lease_id does not match the lease held"
            if lease_id is None:
                reason = "a lease is held; give its lease_id to release it"

            return {"released": False, "reason": reason, **self.status()}

        self._reopen()
        return {"released": True, **self.status()}

    def hold(self, ports: int, seconds: float) -> list[int]:
        """Lab only: make `ports` ports busy for at least `seconds`, idle ports first."""
        if not isinstance(ports, int) or isinstance(ports, bool) or ports < 1:
            raise RequestError(f"ports must be an integer of at least 1, got {ports!r}")

        if ports > len(self.ports):
            raise RequestError(f"ports must be at most {len(self.ports)}, got {ports}")

        _check_seconds("seconds", seconds)
        self.advance()
        chosen = sorted(self.ports, key=lambda port: port.busy)[:ports]
        for port in chosen:
            if port.busy:
                port.end = max(port.end, self.now + seconds)
            else:
                port.start = self.now
                port.end = self.now + seconds
                port.next_arrival = None
                self.calls_started += 1

        return sorted(port.number for port in chosen)

    def hang_up(self, ports: list) -> list[int]:
        """Lab only: end the calls on the given ports now, as if the callers hung up."""
        numbers = {port.number: port for port in self.ports}
        if not isinstance(ports, list) or not ports:
            raise RequestError(f"ports must be a non-empty list of port numbers, got {ports!r}")

        unknown = [
            n for n in ports if not isinstance(n, int) or isinstance(n, bool) or n not in numbers
        ]
        if unknown:
            raise RequestError(f"no port {unknown[0]!r}; ports are 1 to {len(self.ports)}")

        self.advance()
        ended = []
        for number in sorted(set(ports)):
            port = numbers[number]
            if port.busy:
                port.start = None
                port.end = None
                self.calls_completed += 1
                self._schedule_arrival(port, self.now)
                ended.append(number)

        return ended

    def stop(self) -> int:
        """Cut off every call in progress; return how many were dropped."""
        self.advance()
        dropped = 0
        for port in self.ports:
            if port.busy:
                dropped += 1
                port.start = None
                port.end = None

            port.next_arrival = None

        self.calls_dropped += dropped
        self.stopped = True
        return dropped

    def _lease_left(self) -> float:
        return _r(self.lease_expires - self.now)

    def _refusal(self, reason: str) -> dict:
        return {"granted": False, "reason": reason, **self.status()}


def _r(seconds: float) -> float:
    return round(max(seconds, 0.0), 1)


def _check_seconds(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{name} must be a number of seconds, got {value!r}")

    if not 0 < value <= MAX_SECONDS or math.isnan(value):
        raise RequestError(f"{name} must be between 0 and {MAX_SECONDS} seconds, got {value}")


class ScaledClock:
    """Simulated seconds since start: real seconds times the time scale."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self._start = time.monotonic()

    def __call__(self) -> float:
        return (time.monotonic() - self._start) * self.scale


# -- counters file ------------------------------------------------------------------------


def read_counters(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SystemExit(f"ivr_simulator: cannot read counters file {path}: {exc}") from exc

    if not isinstance(data, dict) or not isinstance(data.get("calls_dropped", 0), int):
        raise SystemExit(f"ivr_simulator: counters file {path} is not a counters object")

    return data


def write_counters(path: str, data: dict) -> None:
    """Replace the counters file in one rename, so a crash leaves the old or the new one."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".counters-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())

        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)

        raise


# -- HTTP layer ---------------------------------------------------------------------------


class Simulator:
    """A service: its engine behind a lock, its identity and its cumulative counters."""

    def __init__(self, service: str, version: str, engine: CallEngine, counters_path: str | None):
        self.service = service
        self.version = version
        self.engine = engine
        self.counters_path = counters_path
        self.lock = threading.Lock()
        self.previous = read_counters(counters_path) if counters_path else {}
        self.dropped_before = int(self.previous.get("calls_dropped", 0))

    def _identity(self) -> dict:
        return {"service": self.service, "version": self.version, "pid": os.getpid()}

    def _finish(self, result: dict) -> dict:
        result["calls_dropped"] = self.dropped_before + self.engine.calls_dropped
        return {**self._identity(), **result}

    def status(self) -> dict:
        with self.lock:
            return self._finish(self.engine.status())

    def permission(self, body: dict) -> dict:
        args = _fields(body, {"lease_seconds": DEFAULT_LEASE_SECONDS})
        with self.lock:
            return self._finish(self.engine.request_permission(args["lease_seconds"]))

    def drain(self, body: dict) -> dict:
        defaults = {
            "deadline_seconds": DEFAULT_DRAIN_DEADLINE_SECONDS,
            "lease_seconds": DEFAULT_LEASE_SECONDS,
        }
        args = _fields(body, defaults)
        with self.lock:
            return self._finish(self.engine.drain(args["deadline_seconds"], args["lease_seconds"]))

    def release(self, body: dict) -> dict:
        args = _fields(body, {"lease_id": None})
        if args["lease_id"] is not None and not isinstance(args["lease_id"], str):
            raise RequestError(f"lease_id must be a string, got {args['lease_id']!r}")

        with self.lock:
            return self._finish(self.engine.release(args["lease_id"]))

    def hold(self, body: dict) -> dict:
        args = _fields(body, {"ports": None, "seconds": None})
        with self.lock:
            held = self.engine.hold(args["ports"], args["seconds"])
            return self._finish({"held": held, **self.engine.status()})

    def hang_up(self, body: dict) -> dict:
        args = _fields(body, {"ports": None})
        with self.lock:
            ended = self.engine.hang_up(args["ports"])
            return self._finish({"hung_up": ended, **self.engine.status()})

    def save(self, runs_delta: int = 0) -> None:
        """Write the cumulative counters, this run's dropped calls included."""
        if not self.counters_path:
            return

        with self.lock:
            data = {
                "format": COUNTERS_FORMAT,
                "service": self.service,
                "calls_dropped": self.dropped_before + self.engine.calls_dropped,
                "calls_completed": int(self.previous.get("calls_completed", 0))
                + self.engine.calls_completed,
                "runs": int(self.previous.get("runs", 0)) + runs_delta,
                "version": self.version,
                "updated": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            write_counters(self.counters_path, data)


def _fields(body: dict, defaults: dict) -> dict:
    unknown = sorted(set(body) - set(defaults))
    if unknown:
        raise RequestError(f"unknown field {unknown[0]!r}; expected one of {sorted(defaults)}")

    return {key: body.get(key, default) for key, default in defaults.items()}


ROUTES = {
    ("GET", "/status"): "status",
    ("POST", "/permission"): "permission",
    ("POST", "/drain"): "drain",
    ("POST", "/release"): "release",
    ("POST", "/admin/hold"): "hold",
    ("POST", "/admin/hangup"): "hang_up",
}


class Handler(BaseHTTPRequestHandler):
    server_version = "ivr-simulator/1"
    simulator: Simulator
    token: str | None = None

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if not self._authorized():
            self._send(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong bearer token"})
            return

        action = ROUTES.get((method, path))
        if action is None:
            if any(route_path == path for _method, route_path in ROUTES):
                self._send(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"{method} not allowed"})
            else:
                self._send(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {path}"})

            return

        try:
            if action == "status":
                result = self.simulator.status()
            else:
                result = getattr(self.simulator, action)(self._body())
        except RequestError as exc:
            self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return

        self._send(HTTPStatus.OK, result)

    def _authorized(self) -> bool:
        if not self.token:
            return True

        header = self.headers.get("Authorization", "")
        scheme, _space, value = header.partition(" ")
        expected = self.token.encode("utf-8")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.encode(), expected)

    def _body(self) -> dict:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as exc:
            raise RequestError("Content-Length is not a number") from exc

        if length < 0 or length > MAX_BODY_BYTES:
            raise RequestError(f"request body must be 0 to {MAX_BODY_BYTES} bytes")

        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}

        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise RequestError(f"request body is not valid JSON: {exc}") from exc

        if not isinstance(body, dict):
            raise RequestError("request body must be a JSON object")

        return body

    def _send(self, status: HTTPStatus, payload: dict) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", 'Bearer realm="ivr-simulator"')

        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        sys.stderr.write(f"{self.log_date_time_string()} {self.address_string()} {format % args}\n")


# -- command line -------------------------------------------------------------------------


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")

    return host.strip("[]") or "127.0.0.1", int(port)


def load_fraction(value: str) -> float:
    load = float(value)
    if not 0 <= load < 1:
        raise argparse.ArgumentTypeError(f"load must be at least 0 and below 1, got {value}")

    return load


def positive(value: str) -> float:
    number = float(value)
    if math.isnan(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")

    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Simulate one IVR service for the lab.")
    parser.add_argument("--service", required=True, help='service name, e.g. "IVR Inbound"')
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 18610))
    parser.add_argument("--install-dir", required=True, help="directory with version.txt")
    parser.add_argument("--counters", help="JSON file of dropped calls, kept across restarts")
    parser.add_argument("--ports", type=int, default=16)
    parser.add_argument("--load", type=load_fraction, default=0.4)
    parser.add_argument("--mean-call", type=positive, default=180.0, help="simulated seconds")
    parser.add_argument(
        "--time-scale", type=positive, default=1.0, help="simulated seconds per real second"
    )
    parser.add_argument(
        "--call-distribution", choices=("exponential", "lognormal"), default="lognormal"
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument("--token", help="require Authorization: Bearer TOKEN on every request")
    return parser


def read_version(install_dir: str) -> str:
    """Return the version the service loads, or exit 3 like a service that fails to start."""
    if os.path.exists(os.path.join(install_dir, "BROKEN")):
        sys.stderr.write(
            f"ivr_simulator: refusing to start: {os.path.join(install_dir, 'BROKEN')} exists\n"
        )
        raise SystemExit(EXIT_REFUSED)

    path = os.path.join(install_dir, "version.txt")
    try:
        with open(path, encoding="utf-8-sig") as handle:
            version = handle.read().strip()
    except OSError as exc:
        sys.stderr.write(f"ivr_simulator: refusing to start: cannot read {path}: {exc}\n")
        raise SystemExit(EXIT_REFUSED) from exc

    if not version:
        sys.stderr.write(f"ivr_simulator: refusing to start: {path} is empty\n")
        raise SystemExit(EXIT_REFUSED)

    return version


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.ports < 1:
        sys.stderr.write(f"ivr_simulator: --ports must be at least 1, got {args.ports}\n")
        return 2

    version = read_version(args.install_dir)
    engine = CallEngine(
        args.ports,
        args.load,
        args.mean_call,
        ScaledClock(args.time_scale),
        seed=args.seed,
        distribution=args.call_distribution,
    )
    simulator = Simulator(args.service, version, engine, args.counters)
    handler = type("BoundHandler", (Handler,), {"simulator": simulator, "token": args.token})
    host, port = args.listen
    server_class = ThreadingHTTPServer
    if ":" in host:
        server_class = type("Server6", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})

    try:
        server = server_class((host, port), handler)
    except OSError as exc:
        sys.stderr.write(f"ivr_simulator: cannot listen on {host}:{port}: {exc}\n")
        return EXIT_BIND_FAILED

    server.daemon_threads = True
    simulator.save()

    # serve_forever runs in a thread because shutdown() blocks until it returns and so cannot
    # be called from a signal handler running on the serving thread.
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    worker = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    worker.start()
    sys.stderr.write(
        f"ivr_simulator: {args.service} {version} on {host}:{port} with {args.ports} ports, "
        f"load {args.load}, mean call {args.mean_call} s, time scale {args.time_scale}\n"
    )
    while not stop.wait(1.0):
        pass

    server.shutdown()
    server.server_close()
    with simulator.lock:
        dropped = engine.stop()

    simulator.save(runs_delta=1)
    sys.stderr.write(
        f"ivr_simulator: {args.service} stopped, {dropped} call(s) dropped, "
        f"{simulator.dropped_before + engine.calls_dropped} in total\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
