# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of module_utils/supervisor_rpc.py: the server a configuration names, and how
supervisord's answers map onto the manager interface. A scripted proxy stands in for
supervisord; the integration tests drive a real one."""

import xmlrpc.client

import pytest

from ansible_collections.prairiefyre.updater.plugins.module_utils import supervisor_rpc as rpc
from ansible_collections.prairiefyre.updater.plugins.module_utils.service import ServiceError


@pytest.mark.parametrize(
    ("config", "server"),
    [
        pytest.param(
            "[supervisorctl]\nserverurl=unix:///run/sv.sock\n",
            ("unix:///run/sv.sock", None, None),
            id="serverurl",
        ),
        pytest.param(
            "[unix_http_server]\nfile=%(here)s/sv.sock\n",
            ("unix://{here}/sv.sock", None, None),
            id="socket-file-here",
        ),
        pytest.param(
            "[inet_http_server]\nport=*:9001\n[supervisorctl]\nusername=u\npassword=p\n",
            ("http://127.0.0.1:9001", "u", "p"),
            id="inet-with-auth",
        ),
        pytest.param("[supervisord]\nlogfile=x\n", None, id="no-server"),
        pytest.param("[supervisorctl]\nserverurl=https://example.invalid\n", None, id="https"),
        pytest.param("not an ini file", None, id="garbage"),
    ],
)
def test_server_of(tmp_path, config, server):
    path = tmp_path / "supervisord.conf"
    path.write_text(config)

    expected = server and (server[0].format(here=tmp_path), *server[1:])
    assert rpc.server_of(str(path)) == expected


def test_server_of_a_missing_file(tmp_path):
    assert rpc.server_of(str(tmp_path / "missing.conf")) is None


class ScriptedSupervisor:
    """The supervisor namespace of a proxy: each method answers from a table."""

    def __init__(self, **answers):
        self.answers = answers
        self.calls = []

    def __getattr__(self, method):
        def call(*args):
            self.calls.append((method, *args))
            answer = self.answers[method]
            if isinstance(answer, Exception):
                raise answer
            return answer

        return call


def manager(**answers):
    proxy = type("Proxy", (), {})()
    proxy.supervisor = ScriptedSupervisor(**answers)
    return rpc.SupervisorRPC("ivr01_inbound", "/etc/sv.conf", "unix:///run/sv.sock", proxy)


def fault(code, text="x"):
    return xmlrpc.client.Fault(code, text)


def test_state_stop_and_start_ask_supervisord():
    unit = manager(getProcessInfo={"statename": "RUNNING"}, stopProcess=True, startProcess=True)

    assert unit.state() == "RUNNING"
    unit.stop()
    unit.start()

    assert unit.proxy.supervisor.calls == [
        ("getProcessInfo", "ivr01_inbound"),
        ("stopProcess", "ivr01_inbound", True),
        ("startProcess", "ivr01_inbound", False),
    ]


@pytest.mark.parametrize(
    ("method", "answer"),
    [
        pytest.param("stop", fault(rpc.NOT_RUNNING), id="stop-not-running"),
        pytest.param("start", fault(rpc.ALREADY_STARTED), id="start-already-started"),
        pytest.param("start", fault(rpc.SPAWN_ERROR), id="start-spawn-error-left-to-the-poll"),
    ],
)
def test_answers_that_are_not_failures(method, answer):
    unit = manager(stopProcess=answer, startProcess=answer)

    getattr(unit, method)()


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("answer", "message"),
    [
        pytest.param(
            fault(rpc.BAD_NAME),
            "supervisord (/etc/sv.conf) has no program named ivr01_inbound",
            id="bad-name",
        ),
        pytest.param(
            fault(30, "FAILED: shutting down"),
            "supervisord refused to status ivr01_inbound: FAILED: shutting down",
            id="other-fault",
        ),
        pytest.param(
            ConnectionRefusedError(111, "Connection refused"),
            "cannot reach supervisord at unix:///run/sv.sock (/etc/sv.conf) to status "
            "ivr01_inbound: [Errno 111] Connection refused; is it running?",
            id="no-supervisord",
        ),
    ],
)
def test_failures_name_the_program_and_the_cause(answer, message):
    with pytest.raises(ServiceError) as caught:
        manager(getProcessInfo=answer).state()

    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("stderr", "stdout", "detail"),
    [
        pytest.param(["boom\n", 4, False], ["x", 1, False], "last stderr: boom", id="stderr"),
        pytest.param(
            ["", 0, False],
            ["a\nrefusing to start\n", 20, False],
            "last stdout: a | refusing to start",
            id="redirected-to-stdout",
        ),
        pytest.param(fault(rpc.BAD_NAME), ["", 0, False], None, id="nothing"),
    ],
)
def test_failure_detail(stderr, stdout, detail):
    unit = manager(tailProcessStderrLog=stderr, tailProcessStdoutLog=stdout)

    assert unit.failure_detail() == detail
