# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ask one IVR service about its ports, and take or give back the permission to update it.

Two sources answer the same questions. An HTTP source speaks the simulator's API
(docs/architecture.md): GET /status, POST /permission, /drain and /release. A command source
runs a site-provided program that prints the port state; it cannot close the service to new
calls, so its "permission" is only a check that every port is idle at that moment.
"""

from __future__ import annotations

import http.client
import json
import shlex
import socket
import ssl
import time
import urllib.error

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import open_url
from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import (
    UpdaterError,
    json_kind,
)

# The options every status-endpoint module shares; the doc fragment status_endpoint documents
# them and a unit test keeps the two equal.
ENDPOINT_ARGUMENT_SPEC = {
    "url": {"type": "str"},
    "command": {"type": "list", "elements": "str"},
    "token": {"type": "str", "no_log": True},
    "validate_certs": {"type": "bool", "default": True},
    "timeout": {"type": "float", "default": 10},
}
ENDPOINT_MUTUALLY_EXCLUSIVE = [["url", "command"]]
ENDPOINT_REQUIRED_ONE_OF = [["url", "command"]]
ENDPOINT_REQUIRED_BY = {"token": "url"}

POLL_INTERVAL = 0.5
# A status answer is a few kilobytes; a larger one is not a status service's, and reading it
# whole would hold the host's memory and the run.
MAX_ANSWER_BYTES = 1024 * 1024
READ_CHUNK = 64 * 1024
COMMAND_SERVICE_ENV = "PRAIRIEFYRE_IVR_SERVICE"
LINE_FORMAT = "port=<n> state=busy|idle call_seconds=<s>"
MODES = ("open", "leased", "draining")
SNIPPET_LENGTH = 40


class StatusError(UpdaterError):
    """An IVR service could not be asked, refused the question, or answered nonsense."""


def _snippet(text):
    """Return the start of an answer, short enough to quote in one sentence."""
    text = " ".join(text.split())
    if not text:
        return "an empty answer"

    if len(text) > SNIPPET_LENGTH:
        text = text[:SNIPPET_LENGTH] + "..."
    return f'"{text}"'


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Status:
    """One validated look at a service's ports."""

    def __init__(
        self,
        *,
        ports_total,
        busy_ports,
        longest_call_seconds,
        service=None,
        version=None,
        mode="open",
        lease_id=None,
        lease_expires_in=None,
        drain_deadline_in=None,
        calls_dropped=None,
        calls_deferred=None,
        pid=None,
    ):
        self.ports_total = ports_total
        self.busy_ports = sorted(busy_ports)
        self.longest_call_seconds = longest_call_seconds
        self.service = service
        self.version = version
        self.mode = mode
        self.lease_id = lease_id
        self.lease_expires_in = lease_expires_in
        self.drain_deadline_in = drain_deadline_in
        self.calls_dropped = calls_dropped
        self.calls_deferred = calls_deferred
        self.pid = pid

    @property
    def ports_busy(self):
        return len(self.busy_ports)

    def describe_ports(self):
        """Say how busy the service is: '3/16 ports busy (ports 2, 5, 9), longest call 95 s'."""
        if not self.busy_ports:
            return f"all {self.ports_total} ports idle"

        label = "port" if len(self.busy_ports) == 1 else "ports"
        listed = ", ".join(str(port) for port in self.busy_ports)
        text = f"{self.ports_busy}/{self.ports_total} ports busy ({label} {listed})"
        if self.longest_call_seconds is not None:
            text += f", longest call {self.longest_call_seconds:.0f} s"
        return text


_KINDS = {
    "integer": (_is_int, "an integer"),
    "number": (_is_number, "a number"),
    "boolean": (lambda value: isinstance(value, bool), "true or false"),
    "string": (lambda value: isinstance(value, str), "a string"),
    "list": (lambda value: isinstance(value, list), "a list"),
    "object": (lambda value: isinstance(value, dict), "an object"),
}


class _Shape:
    """Checks the fields of one answer and names the first one that is wrong."""

    def __init__(self, where):
        self.where = where

    def fail(self, detail):
        raise StatusError(
            f"{self.where}: answer has the wrong shape: {detail}", where=self.where, detail=detail
        )

    def get(self, data, key, kind, *, required=False, label=None):
        """Return data[key] if it is of the kind; None if it is absent or null and optional."""
        label = label or key
        value = data.get(key)
        if value is None and not required:
            return None
        if key not in data:
            self.fail(f"{label} is missing")

        check, expected = _KINDS[kind]
        if not check(value):
            self.fail(f"{label} must be {expected}, got {json_kind(value)}")
        return value


def parse_status(data, where):
    """Validate a /status answer (or the status part of any other answer) into a Status."""
    shape = _Shape(where)
    if not isinstance(data, dict):
        shape.fail(f"expected a JSON object, got {json_kind(data)}")

    total = shape.get(data, "ports_total", "integer", required=True)
    if total < 0:
        shape.fail(f"ports_total must not be negative, got {total}")

    ports = shape.get(data, "ports", "list", required=True)
    if len(ports) > total:
        shape.fail(f"lists {len(ports)} ports but ports_total is {total}")

    busy_ports = []
    longest = None
    seen = set()
    for index, item in enumerate(ports):
        label = f"ports[{index}]"
        if not isinstance(item, dict):
            shape.fail(f"{label} must be an object, got {json_kind(item)}")

        port = shape.get(item, "port", "integer", required=True, label=f"{label}.port")
        busy = shape.get(item, "busy", "boolean", required=True, label=f"{label}.busy")
        seconds = shape.get(item, "call_seconds", "number", label=f"{label}.call_seconds")
        if port in seen:
            shape.fail(f"port {port} is listed twice")
        seen.add(port)

        if busy:
            busy_ports.append(port)
            if seconds is not None and (longest is None or seconds > longest):
                longest = seconds

    # A server whose count disagrees with its own port list cannot be trusted to grant safely.
    ports_busy = shape.get(data, "ports_busy", "integer")
    if ports_busy is not None and ports_busy != len(busy_ports):
        shape.fail(f"ports_busy is {ports_busy} but the port list marks {len(busy_ports)} busy")

    reported_longest = shape.get(data, "longest_call_seconds", "number")
    if reported_longest is not None and busy_ports:
        longest = reported_longest

    mode = shape.get(data, "mode", "string") or "open"
    if mode not in MODES:
        shape.fail(f'mode must be open, leased or draining, got "{mode}"')

    lease_id, lease_expires_in = _parse_lease(shape, data, required=False)
    drain = shape.get(data, "drain", "object") or {}
    return Status(
        ports_total=total,
        busy_ports=busy_ports,
        longest_call_seconds=longest,
        service=shape.get(data, "service", "string"),
        version=shape.get(data, "version", "string"),
        mode=mode,
        lease_id=lease_id,
        lease_expires_in=lease_expires_in,
        drain_deadline_in=shape.get(drain, "deadline_in", "number", label="drain.deadline_in"),
        calls_dropped=shape.get(data, "calls_dropped", "integer"),
        calls_deferred=shape.get(data, "calls_deferred", "integer"),
        pid=shape.get(data, "pid", "integer"),
    )


def _parse_lease(shape, data, required):
    """Return (id, expires_in) of the answer's lease object, (None, None) when there is none."""
    lease = shape.get(data, "lease", "object", required=required)
    if lease is None:
        return None, None

    lease_id = shape.get(lease, "id", "string", required=True, label="lease.id")
    expires_in = shape.get(lease, "expires_in", "number", label="lease.expires_in")
    return lease_id, expires_in


def parse_port_lines(text, where):
    """Read the line format: one 'port=<n> state=busy|idle call_seconds=<s>' per port."""
    busy_ports = []
    longest = None
    seen = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue

        fields = dict(word.partition("=")[::2] for word in line.split())
        port = fields.get("port", "")
        state = fields.get("state")
        seconds = fields.get("call_seconds", "0")
        try:
            port = int(port)
            seconds = float(seconds)
        except ValueError:
            port = None
        if port is None or port < 1 or state not in ("busy", "idle") or seconds < 0:
            raise StatusError(
                f'{where}: line {number} is not "{LINE_FORMAT}" (got {_snippet(line)})',
                where=where,
                line=number,
            )

        if port in seen:
            raise StatusError(f"{where}: port {port} is listed twice", where=where, port=port)
        seen.add(port)

        if state == "busy":
            busy_ports.append(port)
            longest = seconds if longest is None else max(longest, seconds)

    if not seen:
        raise StatusError(f"{where}: the command printed no port", where=where)
    return Status(ports_total=len(seen), busy_ports=busy_ports, longest_call_seconds=longest)


class AnswerTooSlow(Exception):
    """The answer's bytes kept coming, but not all of them within the time allowed."""


class AnswerTooLarge(Exception):
    """The answer is larger than any status answer."""


def read_answer(response, seconds, limit=MAX_ANSWER_BYTES, clock=time.monotonic):
    """The body of response, read within ``seconds`` in all and at most ``limit`` bytes long.

    The socket's own timeout bounds each read only, so an endpoint that sends a byte now and
    then would hold the run for as long as it likes; this bounds the whole answer.
    """
    deadline = clock() + seconds
    read = getattr(response, "read1", None) or response.read
    chunks = []
    size = 0
    while True:
        chunk = read(READ_CHUNK)
        if not chunk:
            return b"".join(chunks)

        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge()
        chunks.append(chunk)
        if clock() > deadline:
            raise AnswerTooSlow()


def _decode_json(body, where):
    text = body.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        raise StatusError(
            f"{where}: answer is not JSON (got {_snippet(text)})", where=where
        ) from None


def _error_detail(error):
    """Return the server's own words for a refused request: its JSON "error", or the body."""
    try:
        body = read_answer(error, 5, limit=READ_CHUNK).decode("utf-8", errors="replace")
    except (OSError, AttributeError, AnswerTooSlow, AnswerTooLarge):
        body = ""

    try:
        detail = json.loads(body).get("error")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, str) and detail:
        return detail
    return _snippet(body) if body.strip() else str(error.reason)


def _own_status(status, service, where, option):
    """Return the status if it comes from the service that was asked for."""
    # Another service's grant would let this one stop with calls on it.
    if status.service is not None and status.service.lower() != service.lower():
        raise StatusError(
            f'{where}: the answer comes from "{status.service}", not {service}; check the {option}',
            where=where,
            reported=status.service,
        )
    return status


class Answer:
    """A service's reply to a permission, drain or release request."""

    def __init__(self, status, granted=False, lease_id=None, lease_expires_in=None, **extra):
        self.status = status
        self.granted = granted
        self.lease_id = lease_id
        self.lease_expires_in = lease_expires_in
        self.reason = extra.get("reason")
        self.drain_expired = extra.get("drain_expired", False)
        self.released = extra.get("released", False)


class HttpSource:
    """Speaks the service's HTTP API; grants are leases the service itself enforces."""

    keeps_leases = True

    def __init__(self, service, url, token=None, validate_certs=True, timeout=10):
        if not url.startswith(("http://", "https://")):
            raise StatusError(
                f"{service}: url {url} must start with http:// or https://", service=service
            )

        self.service = service
        self.url = url.rstrip("/")
        self.token = token
        self.validate_certs = validate_certs
        self.timeout = timeout

    def status(self):
        return self._status(self._request("GET", "/status"), self._where("/status"))

    def permission(self, lease_seconds):
        return self._grant("/permission", {"lease_seconds": lease_seconds})

    def drain(self, deadline_seconds, lease_seconds):
        body = {"deadline_seconds": deadline_seconds, "lease_seconds": lease_seconds}
        return self._grant("/drain", body)

    def release(self, lease_id):
        where = self._where("/release")
        data = self._request("POST", "/release", {"lease_id": lease_id})
        shape = _Shape(where)
        released = shape.get(data, "released", "boolean", required=True)
        reason = shape.get(data, "reason", "string")
        status = self._status(data, where)
        return Answer(status, lease_id=lease_id, released=released, reason=reason)

    def _where(self, path):
        return f"{self.service} at {self.url}{path}"

    def _status(self, data, where):
        return _own_status(parse_status(data, where), self.service, where, "url")

    def _grant(self, path, body):
        where = self._where(path)
        data = self._request("POST", path, body)
        shape = _Shape(where)
        granted = shape.get(data, "granted", "boolean", required=True)
        status = self._status(data, where)
        lease_id, expires_in = None, None
        if granted:
            lease_id, expires_in = _parse_lease(shape, data, required=True)

        return Answer(
            status,
            granted=granted,
            lease_id=lease_id,
            lease_expires_in=expires_in,
            reason=shape.get(data, "reason", "string"),
            drain_expired=shape.get(data, "drain_expired", "boolean"),
        )

    def _request(self, method, path, body=None):
        where = self._where(path)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"

        try:
            # use_netrc is off because a netrc entry would replace the Bearer header.
            response = open_url(
                self.url + path,
                data=data,
                headers=headers,
                method=method,
                timeout=self.timeout,
                validate_certs=self.validate_certs,
                use_netrc=False,
                http_agent="prairiefyre.updater",
            )
            payload = read_answer(response, self.timeout)
        except AnswerTooSlow:
            cause = f"the answer did not arrive in full within {self.timeout:g} s"
            raise StatusError(f"{where}: {cause}", where=where) from None
        except AnswerTooLarge:
            cause = (
                f"the answer is larger than {MAX_ANSWER_BYTES // 1024} KiB, far more than a "
                "status answer; is the url the service's status endpoint?"
            )
            raise StatusError(f"{where}: {cause}", where=where) from None
        except urllib.error.HTTPError as error:
            raise self._http_error(where, error) from None
        except urllib.error.URLError as error:
            raise self._connect_error(where, error.reason) from None
        except (OSError, UrlsConnectionError) as error:
            raise self._connect_error(where, error) from None
        except http.client.HTTPException as error:
            cause = f"broken HTTP answer ({type(error).__name__})"
            raise StatusError(f"{where}: {cause}", where=where) from None

        return _decode_json(payload, where)

    def _http_error(self, where, error):
        code = error.code
        if code == 401 and not self.token:
            cause = "the service needs a token (HTTP 401) and none was given"
        elif code in (401, 403):
            cause = f"token refused (HTTP {code})"
        elif code == 404:
            cause = "not found (HTTP 404); is the url the service's base address?"
        elif code >= 500:
            cause = f"server error (HTTP {code} {error.reason})"
        else:
            cause = f"request refused (HTTP {code}: {_error_detail(error)})"
        return StatusError(f"{where}: {cause}", where=where, http_status=code)

    def _connect_error(self, where, reason):
        if isinstance(reason, (socket.timeout, TimeoutError)):
            cause = f"no answer within {self.timeout:g} s"
        elif isinstance(reason, ConnectionRefusedError):
            cause = "connection refused; is the service running?"
        elif isinstance(reason, ssl.SSLCertVerificationError):
            # Name the way out, and its cost, where the operator meets the refusal.
            cause = (
                f"the server's certificate is not trusted ({reason.verify_message}); "
                "add its CA to the trusted CAs of the host that asks, or set validate_certs "
                "to false to accept any certificate"
            )
        elif isinstance(reason, ssl.SSLError):
            cause = f"TLS failed: {reason}"
        elif isinstance(reason, ConnectionError):
            cause = f"connection lost before an answer ({reason})"
        else:
            cause = f"cannot connect: {reason}"
        return StatusError(f"{where}: {cause}", where=where)


class CommandSource:
    """Runs a site-provided program that prints the port state.

    The program prints either the /status JSON object or one line per port in LINE_FORMAT.
    It runs with PRAIRIEFYRE_IVR_SERVICE set to the service name, so one program can serve
    all three services. It cannot close the service to new calls, so a grant here is only
    "every port was idle when asked": there is no lease, and drain is the same as permission.
    """

    keeps_leases = False

    def __init__(self, service, command, run_command):
        self.service = service
        self.command = list(command)
        self.run_command = run_command
        self.where = f'{service} via command "{shlex.join(self.command)}"'

    def status(self):
        try:
            rc, out, err = self.run_command(
                self.command,
                environ_update={COMMAND_SERVICE_ENV: self.service},
                handle_exceptions=False,
            )
        except OSError as error:
            reason = error.strerror or str(error)
            raise StatusError(f"{self.where}: cannot run it ({reason})", where=self.where) from None

        if rc != 0:
            last = (err or out).strip().splitlines()[-1:] or [""]
            raise StatusError(
                f"{self.where}: exit code {rc} ({_snippet(last[0])})", where=self.where, rc=rc
            )

        if out.lstrip().startswith(("{", "[")):
            status = parse_status(_decode_json(out.encode("utf-8"), self.where), self.where)
            status = _own_status(status, self.service, self.where, "command")
        elif out.strip():
            status = parse_port_lines(out, self.where)
        else:
            raise StatusError(f"{self.where}: the command printed nothing", where=self.where)
        return status

    def permission(self, lease_seconds):
        status = self.status()
        return Answer(status, granted=not status.busy_ports)

    def drain(self, deadline_seconds, lease_seconds):
        return self.permission(lease_seconds)


def make_source(service, params, run_command):
    """Build the source the endpoint options describe (url or command, never both)."""
    if params.get("command"):
        return CommandSource(service, params["command"], run_command)

    return HttpSource(
        service,
        params["url"],
        token=params.get("token"),
        validate_certs=params.get("validate_certs", True),
        timeout=params.get("timeout", 10),
    )


class Outcome:
    """What one module run found or did, in the shape the module returns."""

    def __init__(self, status, msg, changed=False, granted=False, lease_id=None, **extra):
        self.status = status
        self.msg = msg
        self.changed = changed
        self.granted = granted
        self.lease_id = lease_id
        self.lease_expires_in = extra.get("lease_expires_in")
        self.would_grant = extra.get("would_grant")
        self.drain_expired = extra.get("drain_expired", False)

    def result(self):
        status = self.status
        result = {
            "changed": self.changed,
            "granted": self.granted,
            "lease_id": self.lease_id,
            "lease_expires_in": self.lease_expires_in,
            "ports_busy": status.ports_busy,
            "ports_total": status.ports_total,
            "busy_ports": status.busy_ports,
            "longest_call_seconds": status.longest_call_seconds,
            "version": status.version,
            "mode": status.mode,
            "calls_dropped": status.calls_dropped,
            "calls_deferred": status.calls_deferred,
            "pid": status.pid,
            "drain_expired": self.drain_expired,
            "msg": self.msg,
        }
        if self.would_grant is not None:
            result["would_grant"] = self.would_grant
        return result


class StatusClient:
    """Runs one action against one service, with the optional short wait for a grant."""

    def __init__(self, service, source, clock=time.monotonic, sleep=time.sleep):
        self.service = service
        self.source = source
        self.clock = clock
        self.sleep = sleep

    def query(self):
        status = self.source.status()
        text = f"{self.service}: {status.describe_ports()}; mode {status.mode}"
        if status.version:
            text += f", version {status.version}"
        if status.lease_id:
            text += f", lease {status.lease_id}"
        # The lease the service holds lets a caller check that its own grant still stands.
        return Outcome(
            status, text, lease_id=status.lease_id, lease_expires_in=status.lease_expires_in
        )

    def request_permission(self, lease_seconds, wait_seconds=0):
        answer = self._until_granted(lambda: self.source.permission(lease_seconds), wait_seconds)
        return self._grant_outcome(answer, "permission granted", wait_seconds)

    def drain(self, deadline_seconds, lease_seconds, wait_seconds=0):
        answer = self._until_granted(
            lambda: self.source.drain(deadline_seconds, lease_seconds), wait_seconds
        )
        status = answer.status
        if answer.granted:
            return self._grant_outcome(answer, "drained, permission granted", wait_seconds)

        if answer.drain_expired:
            text = (
                f"{self.service}: drain deadline passed with {status.describe_ports()}; "
                "the service takes calls again"
            )
            return Outcome(status, text, drain_expired=True)

        text = f"{self.service}: draining, no new calls; {status.describe_ports()}"
        if status.drain_deadline_in is not None:
            text += f"; deadline in {status.drain_deadline_in:.0f} s"
        return Outcome(status, text)

    def release(self, lease_id):
        if not self.source.keeps_leases:
            return self._no_lease_to_release()

        answer = self.source.release(lease_id)
        if answer.released:
            what = f"lease {lease_id}" if lease_id else "the drain"
            if answer.reason:
                what = f"{what} ({answer.reason})"
            text = f"{self.service}: released {what}; the service takes calls again"
            return Outcome(answer.status, text, changed=True, lease_id=lease_id)

        reason = answer.reason or f"lease {lease_id} is not held"
        text = f"{self.service}: nothing released ({reason})"
        return Outcome(answer.status, text, lease_id=lease_id)

    def preview(self, action, lease_id=None):
        """Check mode: say what the action would do now, and take or give back nothing."""
        if action == "query":
            return self.query()
        if action == "release":
            return self._preview_release(lease_id)

        status = self.source.status()
        held = status.mode == "leased" and self.source.keeps_leases
        would = not status.busy_ports and not held
        what = "permission" if action == "request_permission" else "a drain"
        if would:
            text = f"{self.service}: {what} would be granted now, {status.describe_ports()}"
        elif held:
            text = (
                f"{self.service}: {what} would not be granted now, "
                f"lease {status.lease_id} is already held"
            )
        else:
            text = f"{self.service}: {what} would not be granted now, {status.describe_ports()}"
        # Only a lease is a change; a command source's grant takes nothing.
        changed = would and self.source.keeps_leases
        return Outcome(status, text + " (check mode)", changed=changed, would_grant=would)

    def _preview_release(self, lease_id):
        if not self.source.keeps_leases:
            return self._no_lease_to_release()

        status = self.source.status()
        if status.mode == "draining":
            text = f"{self.service}: would cancel the drain (check mode)"
            return Outcome(status, text, changed=True, lease_id=lease_id)

        if status.mode == "leased" and status.lease_id == lease_id:
            text = f"{self.service}: would release lease {lease_id} (check mode)"
            return Outcome(status, text, changed=True, lease_id=lease_id)

        if status.mode != "leased":
            reason = "no lease is held"
        elif lease_id is None:
            reason = "a lease is held and no lease_id was given"
        else:
            reason = f"lease {lease_id} is not the lease held"
        text = f"{self.service}: nothing would be released, {reason} (check mode)"
        return Outcome(status, text, lease_id=lease_id)

    def _no_lease_to_release(self):
        status = self.source.status()
        text = f"{self.service}: nothing to release; a command source keeps no lease"
        return Outcome(status, text)

    def _until_granted(self, ask, wait_seconds):
        # The service grants only when idle, so asking again is the way to notice the moment.
        deadline = self.clock() + (wait_seconds or 0)
        answer = ask()
        while not answer.granted and not answer.drain_expired:
            remaining = deadline - self.clock()
            if remaining <= 0:
                break

            self.sleep(min(POLL_INTERVAL, remaining))
            answer = ask()
        return answer

    def _grant_outcome(self, answer, granted_text, wait_seconds):
        status = answer.status
        if answer.granted and self.source.keeps_leases:
            text = f"{self.service}: {granted_text}, {status.describe_ports()}"
            text += f"; lease {answer.lease_id}"
            if answer.lease_expires_in is not None:
                text += f" expires in {answer.lease_expires_in:.0f} s"
            return Outcome(
                status,
                text,
                changed=True,
                granted=True,
                lease_id=answer.lease_id,
                lease_expires_in=answer.lease_expires_in,
            )

        if answer.granted:
            text = (
                f"{self.service}: {granted_text}, {status.describe_ports()}; the command source "
                "keeps no lease, so a call may still arrive before the stop"
            )
            return Outcome(status, text, granted=True)

        waited = f"still waiting after {wait_seconds:g} s" if wait_seconds else "waiting"
        if status.busy_ports or not answer.reason:
            text = f"{self.service}: {waited}, {status.describe_ports()}"
        else:
            text = f"{self.service}: {waited}, {answer.reason}"
        return Outcome(status, text)
