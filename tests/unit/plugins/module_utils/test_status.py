# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The status client: answer validation, every outcome's message, the short wait, both sources.

HTTP cases run against a scripted service on 127.0.0.1 (port 0) in this process; one test
drives the lab's simulator as a subprocess.
"""

import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from ansible_collections.prairiefyre.updater.plugins.module_utils import status as st
from ansible_collections.prairiefyre.updater.tests.unit.helpers import FakeService

# Loopback requests must not leave for a proxy named in the environment.
pytestmark = pytest.mark.usefixtures("no_proxy")

REPO = Path(__file__).resolve().parents[4]
SIMULATOR = REPO / "lab" / "ivr_simulator.py"
BUSY = {2: 95.4, 5: 30.0, 9: 12.0}
BUSY_TEXT = "3/16 ports busy (ports 2, 5, 9), longest call 95 s"


def status_body(busy=None, total=16, **extra):
    """A /status answer in the contract's shape with the given {port: call seconds} busy."""
    busy = busy or {}
    body = {
        "service": "IVR Inbound",
        "version": "6.3.1.0",
        "pid": 4242,
        "ports_total": total,
        "ports_busy": len(busy),
        "ports": [
            {"port": n, "busy": n in busy, "call_seconds": float(busy.get(n, 0.0))}
            for n in range(1, total + 1)
        ],
        "longest_call_seconds": max(busy.values(), default=0.0),
        "mode": "open",
        "accepting": True,
        "lease": None,
        "drain": None,
        "calls_completed": 10,
        "calls_dropped": 0,
        "calls_deferred": 0,
    }
    body.update(extra)
    return body


def granted_body(lease_id="L1"):
    return status_body(granted=True, mode="leased", lease={"id": lease_id, "expires_in": 900.0})


def refused_body(busy=None, **extra):
    if busy is None:
        busy = BUSY
    extra.setdefault("reason", f"{len(busy)} of 16 ports busy")
    return status_body(busy, granted=False, **extra)


class FakeTime:
    """A clock that moves only when the client sleeps, so waits take no real time."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake():
    with FakeService() as service:
        yield service


def http_client(url, token=None, timeout=2.0, fake_time=None):
    fake_time = fake_time or FakeTime()
    source = st.HttpSource("IVR Inbound", url, token=token, timeout=timeout)
    return st.StatusClient("IVR Inbound", source, clock=fake_time.clock, sleep=fake_time.sleep)


def run_action(client, action, **kwargs):
    if action == "query":
        return client.query()
    if action == "request_permission":
        return client.request_permission(900, **kwargs)
    if action == "drain":
        return client.drain(1800, 900, **kwargs)
    return client.release(**kwargs)


# -- answers and their shape ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        ([], "expected a JSON object, got a list"),
        ({}, "ports_total is missing"),
        ({"ports_total": "16", "ports": []}, "ports_total must be an integer, got a string"),
        ({"ports_total": True, "ports": []}, "ports_total must be an integer, got true/false"),
        ({"ports_total": None, "ports": []}, "ports_total must be an integer, got null"),
        ({"ports_total": -1, "ports": []}, "ports_total must not be negative, got -1"),
        ({"ports_total": 2}, "ports is missing"),
        ({"ports_total": 2, "ports": {}}, "ports must be a list, got an object"),
        (
            {"ports_total": 1, "ports": [{"port": 1, "busy": False}, {"port": 2, "busy": False}]},
            "lists 2 ports but ports_total is 1",
        ),
        ({"ports_total": 2, "ports": [5]}, "ports[0] must be an object, got a number"),
        ({"ports_total": 2, "ports": [{"busy": True}]}, "ports[0].port is missing"),
        (
            {"ports_total": 2, "ports": [{"port": 1, "busy": "yes"}]},
            "ports[0].busy must be true or false, got a string",
        ),
        (
            {"ports_total": 2, "ports": [{"port": 1, "busy": True, "call_seconds": "10"}]},
            "ports[0].call_seconds must be a number, got a string",
        ),
        (
            {"ports_total": 2, "ports": [{"port": 1, "busy": True}, {"port": 1, "busy": False}]},
            "port 1 is listed twice",
        ),
        (
            {"ports_total": 2, "ports_busy": 2, "ports": [{"port": 1, "busy": True}]},
            "ports_busy is 2 but the port list marks 1 busy",
        ),
        (status_body(mode="paused"), 'mode must be open, leased or draining, got "paused"'),
        (status_body(lease={"expires_in": 3}), "lease.id is missing"),
        (status_body(lease="L1"), "lease must be an object, got a string"),
        (
            status_body(drain={"deadline_in": "soon"}),
            "drain.deadline_in must be a number, got a string",
        ),
        (status_body(version=6), "version must be a string, got a number"),
        (status_body(calls_dropped=1.5), "calls_dropped must be an integer, got a number"),
        (status_body(calls_deferred="7"), "calls_deferred must be an integer, got a string"),
    ],
)
@pytest.mark.bad_input
def test_parse_status_names_the_wrong_field(data, detail):
    with pytest.raises(st.StatusError) as caught:
        st.parse_status(data, "IVR Inbound at http://x/status")

    assert (
        str(caught.value) == f"IVR Inbound at http://x/status: answer has the wrong shape: {detail}"
    )


@pytest.mark.parametrize(
    ("data", "busy_ports", "longest", "described"),
    [
        (status_body(), [], None, "all 16 ports idle"),
        (status_body(BUSY), [2, 5, 9], 95.4, BUSY_TEXT),
        (status_body({7: 12.0}), [7], 12.0, "1/16 ports busy (port 7), longest call 12 s"),
        # Only the contract's two required keys: the rest is derived from the port list.
        (
            {"ports_total": 4, "ports": [{"port": 3, "busy": True, "call_seconds": 40}]},
            [3],
            40,
            "1/4 ports busy (port 3), longest call 40 s",
        ),
        (
            {"ports_total": 4, "ports": [{"port": 3, "busy": True}]},
            [3],
            None,
            "1/4 ports busy (port 3)",
        ),
    ],
)
def test_parse_status_reads_busy_ports(data, busy_ports, longest, described):
    status = st.parse_status(data, "here")

    assert (status.busy_ports, status.longest_call_seconds) == (busy_ports, longest)
    assert status.describe_ports() == described


def test_parse_status_keeps_lease_and_drain():
    data = status_body(
        mode="leased", lease={"id": "L1", "expires_in": 12.5}, drain={"deadline_in": 99}
    )

    status = st.parse_status(data, "here")

    assert (status.mode, status.lease_id, status.lease_expires_in) == ("leased", "L1", 12.5)
    assert (status.drain_deadline_in, status.version, status.calls_dropped) == (99, "6.3.1.0", 0)
    assert status.calls_deferred == 0


def test_parse_status_leaves_an_unreported_count_of_turned_away_callers_unknown():
    data = status_body()
    del data["calls_deferred"]

    assert st.parse_status(data, "here").calls_deferred is None


@pytest.mark.parametrize(
    ("text", "ports_total", "busy_ports", "longest"),
    [
        ("port=1 state=idle call_seconds=0\nport=2 state=busy call_seconds=61\n", 2, [2], 61.0),
        ("# ports of IVR UpIQ\n\nport=3 state=busy\nport=1 state=idle\n", 2, [3], 0.0),
        ("port=1 state=idle\r\nport=2 state=idle\r\n", 2, [], None),
    ],
)
def test_parse_port_lines(text, ports_total, busy_ports, longest):
    status = st.parse_port_lines(text, "here")

    assert (status.ports_total, status.busy_ports, status.longest_call_seconds) == (
        ports_total,
        busy_ports,
        longest,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "port=x state=busy",
            'here: line 1 is not "port=<n> state=busy|idle call_seconds=<s>" '
            '(got "port=x state=busy")',
        ),
        (
            "port=1 state=idle\nport=2 state=ringing",
            'here: line 2 is not "port=<n> state=busy|idle call_seconds=<s>" '
            '(got "port=2 state=ringing")',
        ),
        (
            "port=0 state=idle",
            'here: line 1 is not "port=<n> state=busy|idle call_seconds=<s>" '
            '(got "port=0 state=idle")',
        ),
        (
            "port=1 state=busy call_seconds=-4",
            'here: line 1 is not "port=<n> state=busy|idle call_seconds=<s>" '
            '(got "port=1 state=busy call_seconds=-4")',
        ),
        ("port=1 state=idle\nport=1 state=busy", "here: port 1 is listed twice"),
        ("# nothing\n", "here: the command printed no port"),
    ],
)
@pytest.mark.bad_input
def test_parse_port_lines_refuses(text, message):
    with pytest.raises(st.StatusError) as caught:
        st.parse_port_lines(text, "here")

    assert str(caught.value) == message


# -- HTTP: each action's outcome and message ----------------------------------------------


@pytest.mark.parametrize(
    # action, path, reply, kwargs, msg, changed, granted
    "case",
    [
        (
            "query",
            "/status",
            status_body(),
            {},
            "IVR Inbound: all 16 ports idle; mode open, version 6.3.1.0",
            False,
            False,
        ),
        (
            "query",
            "/status",
            status_body({7: 12.0}, mode="draining", drain={"deadline_in": 60}),
            {},
            "IVR Inbound: 1/16 ports busy (port 7), longest call 12 s; mode draining, "
            "version 6.3.1.0",
            False,
            False,
        ),
        (
            "request_permission",
            "/permission",
            granted_body(),
            {},
            "IVR Inbound: permission granted, all 16 ports idle; lease L1 expires in 900 s",
            True,
            True,
        ),
        (
            "request_permission",
            "/permission",
            refused_body(),
            {},
            f"IVR Inbound: waiting, {BUSY_TEXT}",
            False,
            False,
        ),
        (
            "request_permission",
            "/permission",
            refused_body({}, reason="already leased, lease expires in 300.0 s", mode="leased"),
            {},
            "IVR Inbound: waiting, already leased, lease expires in 300.0 s",
            False,
            False,
        ),
        (
            "drain",
            "/drain",
            granted_body(),
            {},
            "IVR Inbound: drained, permission granted, all 16 ports idle; lease L1 expires in "
            "900 s",
            True,
            True,
        ),
        (
            "drain",
            "/drain",
            refused_body(mode="draining", drain={"deadline_in": 1700.0}),
            {},
            f"IVR Inbound: draining, no new calls; {BUSY_TEXT}; deadline in 1700 s",
            False,
            False,
        ),
        (
            "drain",
            "/drain",
            refused_body(drain_expired=True),
            {},
            f"IVR Inbound: drain deadline passed with {BUSY_TEXT}; the service takes calls again",
            False,
            False,
        ),
        (
            "release",
            "/release",
            status_body(released=True),
            {"lease_id": "L1"},
            "IVR Inbound: released lease L1; the service takes calls again",
            True,
            False,
        ),
        (
            "release",
            "/release",
            status_body(released=True, reason="drain cancelled"),
            {"lease_id": None},
            "IVR Inbound: released the drain (drain cancelled); the service takes calls again",
            True,
            False,
        ),
        (
            "release",
            "/release",
            status_body(released=False, reason="no lease is held"),
            {"lease_id": "L1"},
            "IVR Inbound: nothing released (no lease is held)",
            False,
            False,
        ),
        (
            "release",
            "/release",
            status_body(released=False),
            {"lease_id": "L1"},
            "IVR Inbound: nothing released (lease L1 is not held)",
            False,
            False,
        ),
    ],
)
def test_http_outcomes(fake, case):
    action, path, reply, kwargs, msg, changed, granted = case
    fake.reply("GET" if action == "query" else "POST", path, (200, reply))

    result = run_action(http_client(fake.url), action, **kwargs).result()

    assert (result["msg"], result["changed"], result["granted"]) == (msg, changed, granted)


def test_http_result_keys(fake):
    fake.reply("POST", "/permission", (200, granted_body("abc")))

    result = http_client(fake.url).request_permission(900).result()

    assert result == {
        "changed": True,
        "granted": True,
        "lease_id": "abc",
        "lease_expires_in": 900.0,
        "ports_busy": 0,
        "ports_total": 16,
        "busy_ports": [],
        "longest_call_seconds": None,
        "version": "6.3.1.0",
        "mode": "leased",
        "calls_dropped": 0,
        "calls_deferred": 0,
        "pid": 4242,
        "drain_expired": False,
        "msg": "IVR Inbound: permission granted, all 16 ports idle; lease abc expires in 900 s",
    }


def test_query_returns_the_lease_the_service_holds(fake):
    leased = status_body(mode="leased", lease={"id": "L7", "expires_in": 420.0})
    fake.reply("GET", "/status", (200, leased))

    result = http_client(fake.url).query().result()

    assert (result["lease_id"], result["lease_expires_in"], result["changed"]) == (
        "L7",
        420.0,
        False,
    )
    assert result["msg"] == "IVR Inbound: all 16 ports idle; mode leased, version 6.3.1.0, lease L7"


@pytest.mark.parametrize(
    ("action", "kwargs", "sent"),
    [
        ("query", {}, ("GET", "/status", "Bearer s3cret", None)),
        (
            "request_permission",
            {},
            ("POST", "/permission", "Bearer s3cret", {"lease_seconds": 900}),
        ),
        (
            "drain",
            {},
            ("POST", "/drain", "Bearer s3cret", {"deadline_seconds": 1800, "lease_seconds": 900}),
        ),
        ("release", {"lease_id": "L1"}, ("POST", "/release", "Bearer s3cret", {"lease_id": "L1"})),
    ],
)
def test_http_requests_carry_token_and_json(fake, action, kwargs, sent):
    fake.reply(sent[0], sent[1], (200, status_body(granted=False, released=False)))

    run_action(http_client(fake.url + "/", token="s3cret"), action, **kwargs)

    assert fake.requests == [sent]


# -- HTTP: errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reply", "token", "cause"),
    [
        (
            "/status",
            (200, "<html><body>oops</body></html>"),
            None,
            'answer is not JSON (got "<html><body>oops</body></html>")',
        ),
        (
            "/status",
            (200, "<html><head><title>Welcome to the server</title></head></html>"),
            None,
            'answer is not JSON (got "<html><head><title>Welcome to the server...")',
        ),
        ("/status", (200, ""), None, "answer is not JSON (got an empty answer)"),
        (
            "/status",
            (200, [1, 2]),
            None,
            "answer has the wrong shape: expected a JSON object, got a list",
        ),
        (
            "/status",
            (200, {"ports_total": 16}),
            None,
            "answer has the wrong shape: ports is missing",
        ),
        (
            "/status",
            (401, {"error": "missing or wrong bearer token"}),
            None,
            "the service needs a token (HTTP 401) and none was given",
        ),
        ("/status", (401, {"error": "wrong token"}), "bad", "token refused (HTTP 401)"),
        ("/status", (403, {}), "bad", "token refused (HTTP 403)"),
        (
            "/status",
            (404, {"error": "no such endpoint"}),
            None,
            "not found (HTTP 404); is the url the service's base address?",
        ),
        ("/status", (500, "boom"), None, "server error (HTTP 500 Internal Server Error)"),
        ("/status", (503, ""), None, "server error (HTTP 503 Service Unavailable)"),
        (
            "/status",
            (400, {"error": "lease_seconds must be a number of seconds"}),
            None,
            "request refused (HTTP 400: lease_seconds must be a number of seconds)",
        ),
        ("/status", (409, "in use"), None, 'request refused (HTTP 409: "in use")'),
        (
            "/status",
            (200, status_body(service="IVR Outbound")),
            None,
            'the answer comes from "IVR Outbound", not IVR Inbound; check the url',
        ),
        ("/status", (200, status_body(), 1.5), None, "no answer within 0.3 s"),
    ],
)
@pytest.mark.bad_input
def test_http_errors_on_status(fake, path, reply, token, cause):
    fake.reply("GET", path, reply)

    with pytest.raises(st.StatusError) as caught:
        http_client(fake.url, token=token, timeout=0.3).query()

    assert str(caught.value) == f"IVR Inbound at {fake.url}{path}: {cause}"


@pytest.mark.parametrize(
    ("action", "path", "reply", "cause"),
    [
        (
            "request_permission",
            "/permission",
            status_body(granted=True),
            "answer has the wrong shape: lease must be an object, got null",
        ),
        (
            "request_permission",
            "/permission",
            status_body(),
            "answer has the wrong shape: granted is missing",
        ),
        (
            "drain",
            "/drain",
            status_body(granted="yes"),
            "answer has the wrong shape: granted must be true or false, got a string",
        ),
        ("release", "/release", status_body(), "answer has the wrong shape: released is missing"),
    ],
)
@pytest.mark.bad_input
def test_http_errors_on_requests(fake, action, path, reply, cause):
    fake.reply("POST", path, (200, reply))
    kwargs = {"lease_id": "L1"} if action == "release" else {}

    with pytest.raises(st.StatusError) as caught:
        run_action(http_client(fake.url), action, **kwargs)

    assert str(caught.value) == f"IVR Inbound at {fake.url}{path}: {cause}"


@pytest.mark.bad_input
def test_http_connection_refused():
    # A bound socket that never listens refuses connections, and holding it keeps the port ours.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"

        with pytest.raises(st.StatusError) as caught:
            http_client(url).query()

    assert str(caught.value) == (
        f"IVR Inbound at {url}/status: connection refused; is the service running?"
    )


def test_error_message_never_shows_the_token(fake):
    fake.reply("GET", "/status", (401, {"error": "wrong token s3cret"}))

    with pytest.raises(st.StatusError) as caught:
        http_client(fake.url, token="s3cret").query()

    assert "s3cret" not in str(caught.value)
    assert "s3cret" not in json.dumps(caught.value.context)


# -- the short wait ---------------------------------------------------------------------------


def test_wait_repeats_until_granted(fake):
    fake.reply(
        "POST",
        "/permission",
        (200, refused_body()),
        (200, refused_body({2: 96})),
        (200, granted_body()),
    )
    fake_time = FakeTime()

    outcome = http_client(fake.url, fake_time=fake_time).request_permission(900, wait_seconds=5)

    assert (outcome.granted, outcome.changed, outcome.lease_id) == (True, True, "L1")
    assert fake_time.sleeps == [0.5, 0.5]
    assert len(fake.requests) == 3


def test_wait_gives_up_after_wait_seconds(fake):
    fake.reply("POST", "/permission", (200, refused_body()))
    fake_time = FakeTime()

    outcome = http_client(fake.url, fake_time=fake_time).request_permission(900, wait_seconds=1)

    assert outcome.msg == f"IVR Inbound: still waiting after 1 s, {BUSY_TEXT}"
    assert (outcome.granted, outcome.changed) == (False, False)
    assert fake_time.sleeps == [0.5, 0.5]
    assert len(fake.requests) == 3


def test_wait_sleeps_only_what_is_left(fake):
    fake.reply("POST", "/drain", (200, refused_body(mode="draining")))
    fake_time = FakeTime()

    http_client(fake.url, fake_time=fake_time).drain(1800, 900, wait_seconds=0.75)

    assert fake_time.sleeps == [0.5, 0.25]


def test_wait_stops_when_the_drain_expired(fake):
    fake.reply("POST", "/drain", (200, refused_body(drain_expired=True)))
    fake_time = FakeTime()

    outcome = http_client(fake.url, fake_time=fake_time).drain(1800, 900, wait_seconds=30)

    assert outcome.msg.startswith("IVR Inbound: drain deadline passed")
    assert (outcome.result()["drain_expired"], outcome.granted) == (True, False)
    assert fake_time.sleeps == []
    assert len(fake.requests) == 1


def test_no_wait_asks_once(fake):
    fake.reply("POST", "/drain", (200, refused_body(mode="draining")))
    fake_time = FakeTime()

    http_client(fake.url, fake_time=fake_time).drain(1800, 900)

    assert (fake_time.sleeps, len(fake.requests)) == ([], 1)


# -- check mode ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    # action, lease_id, status, msg, changed, would_grant
    "case",
    [
        (
            "request_permission",
            None,
            status_body(),
            "IVR Inbound: permission would be granted now, all 16 ports idle (check mode)",
            True,
            True,
        ),
        (
            "request_permission",
            None,
            status_body(BUSY),
            f"IVR Inbound: permission would not be granted now, {BUSY_TEXT} (check mode)",
            False,
            False,
        ),
        (
            "request_permission",
            None,
            status_body(mode="leased", lease={"id": "L9", "expires_in": 60}),
            "IVR Inbound: permission would not be granted now, lease L9 is already held "
            "(check mode)",
            False,
            False,
        ),
        (
            "drain",
            None,
            status_body(),
            "IVR Inbound: a drain would be granted now, all 16 ports idle (check mode)",
            True,
            True,
        ),
        (
            "drain",
            None,
            status_body(BUSY),
            f"IVR Inbound: a drain would not be granted now, {BUSY_TEXT} (check mode)",
            False,
            False,
        ),
        (
            "release",
            "L1",
            status_body(mode="leased", lease={"id": "L1", "expires_in": 60}),
            "IVR Inbound: would release lease L1 (check mode)",
            True,
            None,
        ),
        (
            "release",
            None,
            status_body(BUSY, mode="draining", drain={"deadline_in": 60}),
            "IVR Inbound: would cancel the drain (check mode)",
            True,
            None,
        ),
        (
            "release",
            "L1",
            status_body(),
            "IVR Inbound: nothing would be released, no lease is held (check mode)",
            False,
            None,
        ),
        (
            "release",
            "L1",
            status_body(mode="leased", lease={"id": "L2", "expires_in": 60}),
            "IVR Inbound: nothing would be released, lease L1 is not the lease held (check mode)",
            False,
            None,
        ),
        (
            "release",
            None,
            status_body(mode="leased", lease={"id": "L2", "expires_in": 60}),
            "IVR Inbound: nothing would be released, a lease is held and no lease_id was given "
            "(check mode)",
            False,
            None,
        ),
    ],
)
def test_preview_takes_nothing(fake, case):
    action, lease_id, status, msg, changed, would_grant = case
    fake.reply("GET", "/status", (200, status))

    result = http_client(fake.url).preview(action, lease_id).result()

    assert (result["msg"], result["changed"], result.get("would_grant")) == (
        msg,
        changed,
        would_grant,
    )
    assert result["granted"] is False
    assert [request[:2] for request in fake.requests] == [("GET", "/status")]


# -- the command source -------------------------------------------------------------------


class FakeRunner:
    """Stands in for AnsibleModule.run_command and records how it was called."""

    def __init__(self, rc=0, out="", err="", error=None):
        self.answer = (rc, out, err)
        self.error = error
        self.calls = []

    def __call__(self, args, **kwargs):
        self.calls.append((args, kwargs))
        if self.error:
            raise self.error
        return self.answer


LINES = "port=1 state=idle call_seconds=0\nport=2 state=busy call_seconds=61\n"
IDLE_LINES = "port=1 state=idle\nport=2 state=idle\n"
COMMAND = ["/opt/ivr-ports", "--json"]
WHERE = 'IVR Inbound via command "/opt/ivr-ports --json"'


def command_client(runner):
    source = st.CommandSource("IVR Inbound", COMMAND, runner)
    fake_time = FakeTime()
    return st.StatusClient("IVR Inbound", source, clock=fake_time.clock, sleep=fake_time.sleep)


@pytest.mark.parametrize(
    ("action", "out", "msg", "granted"),
    [
        (
            "query",
            LINES,
            "IVR Inbound: 1/2 ports busy (port 2), longest call 61 s; mode open",
            False,
        ),
        (
            "query",
            json.dumps(status_body({4: 20.0})),
            "IVR Inbound: 1/16 ports busy (port 4), longest call 20 s; mode open, version 6.3.1.0",
            False,
        ),
        (
            "request_permission",
            IDLE_LINES,
            "IVR Inbound: permission granted, all 2 ports idle; the command source keeps no "
            "lease, so a call may still arrive before the stop",
            True,
        ),
        (
            "drain",
            IDLE_LINES,
            "IVR Inbound: drained, permission granted, all 2 ports idle; the command source "
            "keeps no lease, so a call may still arrive before the stop",
            True,
        ),
        (
            "request_permission",
            LINES,
            "IVR Inbound: waiting, 1/2 ports busy (port 2), longest call 61 s",
            False,
        ),
        (
            "release",
            IDLE_LINES,
            "IVR Inbound: nothing to release; a command source keeps no lease",
            False,
        ),
    ],
)
def test_command_outcomes(action, out, msg, granted):
    runner = FakeRunner(out=out)
    kwargs = {"lease_id": "L1"} if action == "release" else {}

    outcome = run_action(command_client(runner), action, **kwargs)

    # Without a lease nothing was taken, so even a grant changes nothing.
    assert (outcome.msg, outcome.granted, outcome.changed, outcome.lease_id) == (
        msg,
        granted,
        False,
        None,
    )


def test_command_runs_with_args_and_service_env():
    runner = FakeRunner(out=LINES)

    command_client(runner).query()

    assert runner.calls == [
        (
            COMMAND,
            {
                "environ_update": {"PRAIRIEFYRE_IVR_SERVICE": "IVR Inbound"},
                "handle_exceptions": False,
            },
        )
    ]


@pytest.mark.parametrize(
    ("out", "preview_msg", "would_grant"),
    [
        (
            IDLE_LINES,
            "IVR Inbound: permission would be granted now, all 2 ports idle (check mode)",
            True,
        ),
        (
            LINES,
            "IVR Inbound: permission would not be granted now, 1/2 ports busy (port 2), longest "
            "call 61 s (check mode)",
            False,
        ),
    ],
)
def test_command_preview_never_changes(out, preview_msg, would_grant):
    result = command_client(FakeRunner(out=out)).preview("request_permission").result()

    assert (result["msg"], result["would_grant"], result["changed"]) == (
        preview_msg,
        would_grant,
        False,
    )


@pytest.mark.parametrize(
    ("runner", "cause"),
    [
        (
            FakeRunner(rc=2, err="ivr-ports: no such service\n"),
            'exit code 2 ("ivr-ports: no such service")',
        ),
        (FakeRunner(rc=1), "exit code 1 (an empty answer)"),
        (
            FakeRunner(error=FileNotFoundError(2, "No such file or directory")),
            "cannot run it (No such file or directory)",
        ),
        (FakeRunner(out="  \n"), "the command printed nothing"),
        (FakeRunner(out="{oops"), 'answer is not JSON (got "{oops")'),
        (
            FakeRunner(out='{"ports_total": 2}'),
            "answer has the wrong shape: ports is missing",
        ),
        (
            FakeRunner(out=json.dumps(status_body(service="IVR UpIQ"))),
            'the answer comes from "IVR UpIQ", not IVR Inbound; check the command',
        ),
        (
            FakeRunner(out="ports: 2 busy"),
            'line 1 is not "port=<n> state=busy|idle call_seconds=<s>" (got "ports: 2 busy")',
        ),
    ],
)
@pytest.mark.bad_input
def test_command_errors(runner, cause):
    with pytest.raises(st.StatusError) as caught:
        command_client(runner).query()

    assert str(caught.value) == f"{WHERE}: {cause}"


@pytest.mark.parametrize("url", ["127.0.0.1:18610", "ftp://127.0.0.1/", ""])
@pytest.mark.bad_input
def test_url_needs_an_http_scheme(url):
    with pytest.raises(st.StatusError) as caught:
        st.HttpSource("IVR Inbound", url)

    assert str(caught.value) == f"IVR Inbound: url {url} must start with http:// or https://"


@pytest.mark.parametrize(
    ("params", "kind"),
    [
        ({"url": "http://127.0.0.1:1", "command": None}, st.HttpSource),
        ({"url": None, "command": ["/bin/true"]}, st.CommandSource),
    ],
)
def test_make_source_picks_the_configured_one(params, kind):
    assert isinstance(st.make_source("IVR Inbound", params, FakeRunner()), kind)


# -- the lab's simulator ----------------------------------------------------------------------


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def simulator(tmp_path):
    """The lab's simulator with 4 idle ports, a token and 20 simulated seconds per second."""
    if not SIMULATOR.exists():
        pytest.skip("lab/ivr_simulator.py is not there yet")

    (tmp_path / "version.txt").write_text("6.3.1.0\n")
    url = f"http://127.0.0.1:{_free_port()}"
    args = [
        sys.executable,
        str(SIMULATOR),
        "--service=IVR Inbound",
        f"--listen={url[len('http://') :]}",
        f"--install-dir={tmp_path}",
        "--ports=4",
        "--load=0",
        "--time-scale=20",
        "--seed=7",
        "--token=lab-token",
    ]
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    client = st.StatusClient("IVR Inbound", st.HttpSource("IVR Inbound", url, token="lab-token"))
    deadline = time.monotonic() + 10
    while True:
        try:
            client.query()
            break
        except st.StatusError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the simulator did not come up: {process.communicate()[1]}")
            time.sleep(0.1)

    yield url, client
    process.terminate()
    process.wait(timeout=10)
    process.stderr.close()


def _hold(url, ports, seconds):
    request = urllib.request.Request(
        url + "/admin/hold",
        data=json.dumps({"ports": ports, "seconds": seconds}).encode(),
        headers={"Authorization": "Bearer lab-token", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)["held"]


def test_against_the_simulator(simulator):
    url, client = simulator

    assert client.query().msg == "IVR Inbound: all 4 ports idle; mode open, version 6.3.1.0"

    held = _hold(url, 2, 20)  # one real second at 20x
    waiting = client.request_permission(900)
    assert waiting.msg.startswith(f"IVR Inbound: waiting, 2/4 ports busy (ports {held[0]}, ")
    assert (waiting.granted, waiting.changed) == (False, False)

    drained = client.drain(1800, 900, wait_seconds=10)
    assert (drained.granted, drained.changed, drained.status.mode) == (True, True, "leased")
    assert drained.msg == (
        f"IVR Inbound: drained, permission granted, all 4 ports idle; lease {drained.lease_id} "
        f"expires in {drained.lease_expires_in:.0f} s"
    )

    assert client.preview("release", drained.lease_id).msg == (
        f"IVR Inbound: would release lease {drained.lease_id} (check mode)"
    )
    refused = client.request_permission(900)
    assert refused.msg.startswith("IVR Inbound: waiting, already leased, lease expires in ")

    released = client.release(drained.lease_id)
    assert released.msg == (
        f"IVR Inbound: released lease {drained.lease_id}; the service takes calls again"
    )
    assert (released.changed, released.status.mode) == (True, "open")
    assert (
        client.release(drained.lease_id).msg == "IVR Inbound: nothing released (no lease is held)"
    )


@pytest.mark.bad_input
def test_simulator_refuses_a_wrong_token(simulator):
    url, _client = simulator
    client = st.StatusClient("IVR Inbound", st.HttpSource("IVR Inbound", url, token="wrong"))

    with pytest.raises(st.StatusError) as caught:
        client.query()

    assert str(caught.value) == f"IVR Inbound at {url}/status: token refused (HTTP 401)"


# -- reading an answer within bounds -----------------------------------------------------------


class DrippingResponse:
    """An answer that arrives in the given chunks, each after `step` seconds of a fake clock."""

    def __init__(self, chunks, clock, step):
        self.chunks = list(chunks)
        self.clock = clock
        self.step = step
        self.asked = []

    def read1(self, size):
        self.asked.append(size)
        self.clock.now += self.step
        return self.chunks.pop(0) if self.chunks else b""


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_read_answer_joins_the_chunks():
    clock = Clock()
    response = DrippingResponse([b'{"ports', b'_total": 4}'], clock, step=0.1)

    assert st.read_answer(response, 10, clock=clock) == b'{"ports_total": 4}'
    assert response.asked == [st.READ_CHUNK] * 3


@pytest.mark.bad_input
def test_read_answer_ends_a_drip_at_the_deadline():
    clock = Clock()
    # One byte every 3 s, for far longer than the 10 s allowed.
    response = DrippingResponse([b"{"] * 1000, clock, step=3)

    with pytest.raises(st.AnswerTooSlow):
        st.read_answer(response, 10, clock=clock)

    assert len(response.asked) == 4
    assert clock.now == 112


@pytest.mark.bad_input
def test_read_answer_refuses_an_answer_larger_than_the_limit():
    clock = Clock()
    response = DrippingResponse([b"x" * 600, b"x" * 600, b"x" * 600], clock, step=0)

    with pytest.raises(st.AnswerTooLarge):
        st.read_answer(response, 10, limit=1000, clock=clock)

    assert len(response.asked) == 2


def test_read_answer_falls_back_to_read_without_read1():
    response = type("Plain", (), {})()
    parts = [b"{}", b""]
    response.read = lambda size: parts.pop(0)

    assert st.read_answer(response, 10) == b"{}"


class OddAnswers:
    """A real HTTP server on 127.0.0.1 whose answer drips a byte at a time, or is huge."""

    def __init__(self, kind):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                size = 2 * st.MAX_ANSWER_BYTES if kind == "huge" else 1000
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                try:
                    if kind == "huge":
                        self.wfile.write(b" " * size)
                        return
                    for _byte in range(size):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.1)
                except OSError:
                    # The client gave up, as it should.
                    pass

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("kind", "cause"),
    [
        ("drip", "the answer did not arrive in full within 0.5 s"),
        (
            "huge",
            "the answer is larger than 1024 KiB, far more than a status answer; is the url the "
            "service's status endpoint?",
        ),
    ],
)
def test_an_answer_that_drips_or_floods_ends_the_request(kind, cause):
    server = OddAnswers(kind)
    try:
        # Each dripped byte comes within the socket timeout: only the bound on the whole answer
        # can end the request before the 100 s the drip takes.
        with pytest.raises(st.StatusError) as caught:
            http_client(server.url, timeout=0.5).query()
    finally:
        server.close()

    assert str(caught.value) == f"IVR Inbound at {server.url}/status: {cause}"
