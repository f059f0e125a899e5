# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ivr_port_status module end to end: options, changed, check mode, failures.

The service is a scripted HTTP server on 127.0.0.1 (port 0) in this process, or a real
command run through AnsibleModule.run_command.
"""

import json
import sys
import textwrap

import pytest
import yaml

from ansible_collections.prairiefyre.updater.plugins.doc_fragments import status_endpoint
from ansible_collections.prairiefyre.updater.plugins.modules import ivr_port_status
from ansible_collections.prairiefyre.updater.tests.unit.helpers import FakeService

# Loopback requests must not leave for a proxy named in the environment.
pytestmark = pytest.mark.usefixtures("no_proxy")

BUSY = {2: 95.0, 5: 30.0, 9: 12.0}
BUSY_TEXT = "3/16 ports busy (ports 2, 5, 9), longest call 95 s"


def status_body(busy=None, **extra):
    busy = busy or {}
    body = {
        "service": "IVR Inbound",
        "version": "6.3.1.0",
        "ports_total": 16,
        "ports_busy": len(busy),
        "ports": [
            {"port": n, "busy": n in busy, "call_seconds": busy.get(n, 0.0)} for n in range(1, 17)
        ],
        "longest_call_seconds": max(busy.values(), default=0.0),
        "mode": "open",
        "lease": None,
        "drain": None,
        "calls_dropped": 2,
        "calls_deferred": 5,
        "pid": 4321,
    }
    body.update(extra)
    return body


GRANTED = status_body(granted=True, mode="leased", lease={"id": "L1", "expires_in": 900.0})
REFUSED = status_body(BUSY, granted=False, reason="3 of 16 ports busy")


@pytest.fixture
def fake():
    with FakeService(record_auth=False) as service:
        yield service


def args_for(fake, **options):
    return {"service": "IVR Inbound", "url": fake.url, **options}


# -- documentation and argument spec agree ------------------------------------------------


def documented_options():
    options = yaml.safe_load(status_endpoint.ModuleDocFragment.DOCUMENTATION)["options"]
    options.update(yaml.safe_load(ivr_port_status.DOCUMENTATION)["options"])
    return options


def test_documentation_matches_the_argument_spec():
    spec = ivr_port_status.ARGUMENT_SPEC
    documented = documented_options()

    assert sorted(documented) == sorted(spec)
    for name, option in spec.items():
        doc = documented[name]
        for key in ("type", "default", "choices", "elements"):
            assert doc.get(key) == option.get(key), f"{name}: {key}"
        assert bool(doc.get("required")) == bool(option.get("required")), name
    assert spec["token"]["no_log"] is True


def test_documentation_parts_are_yaml():
    for text in (ivr_port_status.EXAMPLES, ivr_port_status.RETURN):
        assert yaml.safe_load(text)


def test_every_return_key_is_documented(fake, run_module):
    fake.reply("GET", "/status", (200, status_body()))
    returned = yaml.safe_load(ivr_port_status.RETURN)

    result = run_module(ivr_port_status, args_for(fake, action="request_permission"), True)

    assert set(result) - {"changed", "failed"} <= set(returned)
    for name, doc in returned.items():
        assert {"description", "returned", "type", "sample"} <= set(doc), name


# -- options ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (
            {"service": "IVR Inbound", "url": "http://127.0.0.1:1", "command": ["/bin/true"]},
            "parameters are mutually exclusive: url|command",
        ),
        ({"service": "IVR Inbound"}, "one of the following is required: url, command"),
        (
            {"service": "IVR Inbound", "command": ["/bin/true"], "token": "t"},
            "missing parameter(s) required by 'token': url",
        ),
        ({"url": "http://127.0.0.1:1"}, "missing required arguments: service"),
        (
            {"service": "IVR Inbound", "url": "http://127.0.0.1:1", "action": "grant"},
            "value of action must be one of: query, request_permission, drain, release, got: grant",
        ),
    ],
)
@pytest.mark.bad_input
def test_option_rules_are_declared(run_module, args, msg):
    result = run_module(ivr_port_status, args)

    assert (result["failed"], result["msg"]) == (True, msg)


# -- outcomes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    # options, method, path, reply, msg, changed, granted
    "case",
    [
        (
            {},
            "GET",
            "/status",
            status_body(BUSY),
            f"IVR Inbound: {BUSY_TEXT}; mode open, version 6.3.1.0",
            False,
            False,
        ),
        (
            {"action": "request_permission"},
            "POST",
            "/permission",
            REFUSED,
            f"IVR Inbound: waiting, {BUSY_TEXT}",
            False,
            False,
        ),
        (
            {"action": "request_permission"},
            "POST",
            "/permission",
            GRANTED,
            "IVR Inbound: permission granted, all 16 ports idle; lease L1 expires in 900 s",
            True,
            True,
        ),
        (
            {"action": "drain"},
            "POST",
            "/drain",
            status_body(BUSY, granted=False, mode="draining", drain={"deadline_in": 1800.0}),
            f"IVR Inbound: draining, no new calls; {BUSY_TEXT}; deadline in 1800 s",
            False,
            False,
        ),
        (
            {"action": "release", "lease_id": "L1"},
            "POST",
            "/release",
            status_body(released=True),
            "IVR Inbound: released lease L1; the service takes calls again",
            True,
            False,
        ),
        (
            {"action": "release", "lease_id": "L1"},
            "POST",
            "/release",
            status_body(released=False, reason="no lease is held"),
            "IVR Inbound: nothing released (no lease is held)",
            False,
            False,
        ),
    ],
)
def test_outcomes(fake, run_module, case):
    options, method, path, reply, msg, changed, granted = case
    fake.reply(method, path, (200, reply))

    result = run_module(ivr_port_status, args_for(fake, **options))

    # A refusal is not a failure: `until: result.granted` must be able to try again.
    assert result["failed"] is False
    assert (result["msg"], result["changed"], result["granted"]) == (msg, changed, granted)
    assert "would_grant" not in result


def test_grant_returns_the_lease_and_the_port_state(fake, run_module):
    fake.reply("POST", "/permission", (200, GRANTED))

    result = run_module(ivr_port_status, args_for(fake, action="request_permission"))

    assert result == {
        "changed": True,
        "failed": False,
        "granted": True,
        "lease_id": "L1",
        "lease_expires_in": 900.0,
        "ports_busy": 0,
        "ports_total": 16,
        "busy_ports": [],
        "longest_call_seconds": None,
        "version": "6.3.1.0",
        "mode": "leased",
        "calls_dropped": 2,
        "calls_deferred": 5,
        "pid": 4321,
        "drain_expired": False,
        "msg": "IVR Inbound: permission granted, all 16 ports idle; lease L1 expires in 900 s",
    }
    assert fake.requests == [("POST", "/permission", {"lease_seconds": 900})]


def test_options_reach_the_service(fake, run_module):
    fake.reply("POST", "/drain", (200, GRANTED))
    options = {"action": "drain", "lease_seconds": 600, "drain_deadline_seconds": 1200}

    run_module(ivr_port_status, args_for(fake, **options))

    assert fake.requests == [
        ("POST", "/drain", {"deadline_seconds": 1200, "lease_seconds": 600}),
    ]


def test_wait_seconds_waits_for_the_grant(fake, run_module):
    fake.reply("POST", "/permission", (200, REFUSED), (200, GRANTED))

    result = run_module(
        ivr_port_status, args_for(fake, action="request_permission", wait_seconds=5)
    )

    assert (result["granted"], result["changed"], len(fake.requests)) == (True, True, 2)


# -- check mode ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    # options, status, msg, changed, would_grant
    "case",
    [
        (
            {"action": "request_permission"},
            status_body(),
            "IVR Inbound: permission would be granted now, all 16 ports idle (check mode)",
            True,
            True,
        ),
        (
            {"action": "drain"},
            status_body(BUSY),
            f"IVR Inbound: a drain would not be granted now, {BUSY_TEXT} (check mode)",
            False,
            False,
        ),
        (
            {"action": "release", "lease_id": "L1"},
            status_body(mode="leased", lease={"id": "L1", "expires_in": 30.0}),
            "IVR Inbound: would release lease L1 (check mode)",
            True,
            None,
        ),
        (
            {},
            status_body(),
            "IVR Inbound: all 16 ports idle; mode open, version 6.3.1.0",
            False,
            None,
        ),
    ],
)
def test_check_mode_only_reads(fake, run_module, case):
    options, status, msg, changed, would_grant = case
    fake.reply("GET", "/status", (200, status))

    result = run_module(ivr_port_status, args_for(fake, **options), check_mode=True)

    assert (result["msg"], result["changed"], result.get("would_grant")) == (
        msg,
        changed,
        would_grant,
    )
    assert (result["granted"], result["failed"]) == (False, False)
    assert [request[:2] for request in fake.requests] == [("GET", "/status")]


# -- failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "cause"),
    [
        ((401, {"error": "wrong"}), "token refused (HTTP 401)"),
        ((500, {"error": "boom"}), "server error (HTTP 500 Internal Server Error)"),
        ((200, {"ports": []}), "answer has the wrong shape: ports_total is missing"),
    ],
)
@pytest.mark.bad_input
def test_failures_name_service_and_url(fake, run_module, reply, cause):
    fake.reply("GET", "/status", reply)

    result = run_module(ivr_port_status, args_for(fake, token="s3cret"))

    where = f"IVR Inbound at {fake.url}/status"
    assert (result["failed"], result["msg"]) == (True, f"{where}: {cause}")
    assert result["where"] == where
    assert "s3cret" not in json.dumps(result)


# -- a real command -----------------------------------------------------------------------

PORT_SCRIPT = """
    import os, sys
    if os.environ.get("PRAIRIEFYRE_IVR_SERVICE") != "IVR UpIQ":
        sys.exit("wrong service: %s" % os.environ.get("PRAIRIEFYRE_IVR_SERVICE"))
    state = sys.argv[1]
    print("port=1 state=idle call_seconds=0")
    print("port=2 state=%s call_seconds=42" % state)
"""


@pytest.mark.parametrize(
    ("state", "msg", "granted"),
    [
        (
            "idle",
            "IVR UpIQ: permission granted, all 2 ports idle; the command source keeps no lease, "
            "so a call may still arrive before the stop",
            True,
        ),
        ("busy", "IVR UpIQ: waiting, 1/2 ports busy (port 2), longest call 42 s", False),
    ],
)
def test_command_source_through_run_command(tmp_path, run_module, state, msg, granted):
    script = tmp_path / "ivr_ports.py"
    script.write_text(textwrap.dedent(PORT_SCRIPT))
    args = {
        "service": "IVR UpIQ",
        "command": [sys.executable, str(script), state],
        "action": "request_permission",
    }

    result = run_module(ivr_port_status, args)

    assert (result["msg"], result["granted"], result["changed"]) == (msg, granted, False)
    assert result["lease_id"] is None


@pytest.mark.bad_input
def test_command_that_fails(tmp_path, run_module):
    script = tmp_path / "ivr_ports.py"
    script.write_text(textwrap.dedent(PORT_SCRIPT))

    result = run_module(
        ivr_port_status, {"service": "IVR Inbound", "command": [sys.executable, str(script)]}
    )

    where = f'IVR Inbound via command "{sys.executable} {script}"'
    assert result["msg"] == f'{where}: exit code 1 ("wrong service: IVR Inbound")'


# -- the record of what an update holds (record_dir) -----------------------------------------

DRAINING = status_body(BUSY, granted=False, mode="draining", drain={"deadline_in": 1800.0})


def record_of(directory):
    """The one record file in directory, as JSON, or None; fails on more than one."""
    files = sorted(directory.glob("*.json")) if directory.exists() else []
    assert len(files) <= 1, files
    return json.loads(files[0].read_text(encoding="utf-8")) if files else None


def grant_recorded(fake, run_module, records):
    """Take the lease L1 with its record in records, as a run of the role does."""
    fake.reply("POST", "/permission", (200, GRANTED))
    return run_module(
        ivr_port_status, args_for(fake, action="request_permission", record_dir=str(records))
    )


def test_a_grant_is_recorded_under_the_service_name(fake, run_module, tmp_path):
    records = tmp_path / "leases"

    result = grant_recorded(fake, run_module, records)

    written = json.loads((records / "ivr_inbound.json").read_text(encoding="utf-8"))
    assert result["record"] == written
    assert {k: written[k] for k in ("service", "kind", "lease_id", "url")} == {
        "service": "IVR Inbound",
        "kind": "lease",
        "lease_id": "L1",
        "url": fake.url,
    }
    assert written["ends_at"] - written["recorded_at"] == pytest.approx(900.0)


def test_a_refusal_writes_no_record(fake, run_module, tmp_path):
    fake.reply("POST", "/permission", (200, REFUSED))
    records = tmp_path / "leases"

    result = run_module(
        ivr_port_status, args_for(fake, action="request_permission", record_dir=str(records))
    )

    assert (result["granted"], result["record"], record_of(records)) == (False, None, None)


def test_a_drain_is_recorded_until_granted_and_forgotten_when_it_expired(
    fake, run_module, tmp_path
):
    records = tmp_path / "leases"
    options = args_for(fake, action="drain", record_dir=str(records))
    fake.reply("POST", "/drain", (200, DRAINING))
    run_module(ivr_port_status, options)
    drained = record_of(records)

    fake.reply("POST", "/drain", (200, GRANTED))
    run_module(ivr_port_status, options)
    granted = record_of(records)

    fake.reply("POST", "/drain", (200, status_body(BUSY, granted=False, drain_expired=True)))
    expired = run_module(ivr_port_status, options)

    assert (drained["kind"], drained["lease_id"]) == ("drain", None)
    assert drained["ends_at"] - drained["recorded_at"] == pytest.approx(1800.0)
    assert (granted["kind"], granted["lease_id"]) == ("lease", "L1")
    assert (expired["drain_expired"], expired["record"], record_of(records)) == (True, None, None)


def test_release_without_lease_id_gives_back_the_recorded_lease(fake, run_module, tmp_path):
    records = tmp_path / "leases"
    grant_recorded(fake, run_module, records)
    fake.reply("POST", "/release", (200, status_body(released=True)))
    fake.requests.clear()

    result = run_module(ivr_port_status, args_for(fake, action="release", record_dir=str(records)))

    assert fake.requests == [("POST", "/release", {"lease_id": "L1"})]
    assert (result["changed"], result["lease_id"], result["record"]["lease_id"]) == (
        True,
        "L1",
        "L1",
    )
    assert result["msg"] == "IVR Inbound: released lease L1; the service takes calls again"
    assert record_of(records) is None


def test_release_of_a_lease_no_longer_held_still_forgets_the_record(fake, run_module, tmp_path):
    records = tmp_path / "leases"
    grant_recorded(fake, run_module, records)
    fake.reply("POST", "/release", (200, status_body(released=False, reason="no lease is held")))

    result = run_module(ivr_port_status, args_for(fake, action="release", record_dir=str(records)))

    assert (result["changed"], result["msg"]) == (
        False,
        "IVR Inbound: nothing released (no lease is held)",
    )
    assert record_of(records) is None


def test_release_of_a_recorded_drain_cancels_it_without_a_lease_id(fake, run_module, tmp_path):
    records = tmp_path / "leases"
    fake.reply("POST", "/drain", (200, DRAINING))
    run_module(ivr_port_status, args_for(fake, action="drain", record_dir=str(records)))
    fake.reply("POST", "/release", (200, status_body(released=True)))
    fake.requests.clear()

    result = run_module(ivr_port_status, args_for(fake, action="release", record_dir=str(records)))

    assert fake.requests == [("POST", "/release", {"lease_id": None})]
    assert result["msg"] == "IVR Inbound: released the drain; the service takes calls again"
    assert record_of(records) is None


def test_release_without_a_record_touches_nothing(fake, run_module, tmp_path):
    # Somebody else's drain or lease must survive a release that has nothing recorded.
    fake.reply("GET", "/status", (200, DRAINING))

    result = run_module(
        ivr_port_status, args_for(fake, action="release", record_dir=str(tmp_path / "leases"))
    )

    assert fake.requests == [("GET", "/status", None)]
    assert (result["changed"], result["record"], result["mode"]) == (False, None, "draining")
    assert result["msg"] == (
        "IVR Inbound: nothing to release, no lease or drain is recorded; the service is "
        "draining, started by someone else, deadline in 1800 s, and takes no new calls until "
        "it ends"
    )


def test_release_without_a_record_says_whose_lease_keeps_callers_out(fake, run_module, tmp_path):
    leased = status_body(mode="leased", lease={"id": "L9", "expires_in": 412.4})
    fake.reply("GET", "/status", (200, leased))

    result = run_module(
        ivr_port_status, args_for(fake, action="release", record_dir=str(tmp_path / "leases"))
    )

    assert (result["changed"], result["lease_id"]) == (False, "L9")
    assert result["msg"] == (
        "IVR Inbound: nothing to release, no lease or drain is recorded; the service is leased "
        "by someone else (lease L9, expires in 412 s) and takes no new calls until then"
    )


def test_release_of_another_lease_keeps_the_record(fake, run_module, tmp_path):
    records = tmp_path / "leases"
    grant_recorded(fake, run_module, records)
    fake.reply("POST", "/release", (200, status_body(released=False, reason="not held")))

    result = run_module(
        ivr_port_status,
        args_for(fake, action="release", lease_id="L0", record_dir=str(records)),
    )

    assert result["record"] is None
    assert record_of(records)["lease_id"] == "L1"


def test_check_mode_shows_the_record_and_keeps_it(fake, run_module, tmp_path):
    records = tmp_path / "leases"
    grant_recorded(fake, run_module, records)
    leased = status_body(mode="leased", lease={"id": "L1", "expires_in": 800.0})
    fake.reply("GET", "/status", (200, leased))
    fake.requests.clear()

    result = run_module(
        ivr_port_status, args_for(fake, action="release", record_dir=str(records)), True
    )

    assert fake.requests == [("GET", "/status", None)]
    assert result["msg"] == "IVR Inbound: would release lease L1 (check mode)"
    assert (result["changed"], result["record"]["lease_id"]) == (True, "L1")
    assert record_of(records)["lease_id"] == "L1"


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("content", "msg_part"),
    [
        ("{", "cannot be read"),
        ('{"service": "IVR Inbound", "kind": "lock"}', "is not one this collection writes"),
        ('{"service": "IVR Inbound", "kind": "lease"}', "is not one this collection writes"),
        ("[]", "cannot be read (it holds a list, not a JSON object)"),
    ],
)
def test_a_damaged_record_fails_naming_the_file(fake, run_module, tmp_path, content, msg_part):
    records = tmp_path / "leases"
    records.mkdir()
    path = records / "ivr_inbound.json"
    path.write_text(content, encoding="utf-8")

    result = run_module(ivr_port_status, args_for(fake, action="release", record_dir=str(records)))

    assert result["failed"] is True
    assert f"the lease record {path} {msg_part}" in result["msg"]
    assert "remove it once the service it names takes calls again" in result["msg"]
    assert path.read_text(encoding="utf-8") == content
    assert fake.requests == []
