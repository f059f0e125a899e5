# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drive a supervisord program over supervisord's own XML-RPC interface.

supervisorctl is a Python program, so each call starts an interpreter: 0.1 to 0.3 s. Between
the stop and the start of an update that is downtime, so the window talks to supervisord on
the socket its configuration names, the way supervisorctl itself does, and spends
milliseconds there instead. ``SupervisorRPC`` has the manager interface of
``service.Supervisor`` (state, start, stop, failure_detail), so ``ServiceController`` drives it.
"""

import base64
import configparser
import http.client
import os
import socket
import xmlrpc.client

from ansible_collections.prairiefyre.updater.plugins.module_utils.service import (
    STDERR_TAIL_LINES,
    SUPERVISOR_STATES,
    ServiceError,
    positive_pid,
)

# supervisord's fault codes (supervisor.xmlrpc.Faults).
BAD_NAME = 10
SPAWN_ERROR = 50
ALREADY_STARTED = 60
NOT_RUNNING = 70

TAIL_BYTES = 4096


def server_of(config):
    """``(url, username, password)`` supervisorctl would use with this configuration, or None.

    The URL is ``unix:///path/to/socket`` or ``http://host:port``; ``%(here)s`` is the
    configuration's directory, as in supervisord.
    """
    parser = configparser.RawConfigParser()
    try:
        if not parser.read(config):
            return None
    except configparser.Error:
        return None

    def get(section, key):
        value = parser.get(section, key, fallback=None)
        here = os.path.dirname(os.path.abspath(config))
        return value.replace("%(here)s", here).strip() if value else None

    url = get("supervisorctl", "serverurl")
    if not url and get("unix_http_server", "file"):
        url = "unix://" + get("unix_http_server", "file")
    if not url and get("inet_http_server", "port"):
        url = "http://" + get("inet_http_server", "port").replace("*:", "127.0.0.1:")
    if not url or not url.startswith(("unix://", "http://")):
        return None
    return url, get("supervisorctl", "username"), get("supervisorctl", "password")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


class _Transport(xmlrpc.client.Transport):
    """HTTP over a unix socket or TCP, with supervisord's basic authentication."""

    def __init__(self, url, username, password, timeout):
        headers = []
        if username:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            headers.append(("Authorization", f"Basic {token}"))
        super().__init__(headers=headers)
        self.url = url
        self.timeout = timeout

    def make_connection(self, host):
        if self.url.startswith("unix://"):
            return _UnixConnection(self.url[len("unix://") :], self.timeout)
        return http.client.HTTPConnection(host, timeout=self.timeout)


def proxy_for(url, username=None, password=None, timeout=30):
    host = "localhost" if url.startswith("unix://") else url[len("http://") :].rstrip("/")
    transport = _Transport(url, username, password, timeout)
    return xmlrpc.client.ServerProxy(f"http://{host}/RPC2", transport=transport)


class SupervisorRPC:
    """One program under supervisord, driven over XML-RPC."""

    manager = "supervisord"
    states = SUPERVISOR_STATES
    gave_up = ("FATAL", "EXITED")

    def __init__(self, name, config, url, proxy):
        self.name = name
        self.config = config
        self.url = url
        self.proxy = proxy

    def state(self):
        """Return the program's raw supervisord state, e.g. RUNNING."""
        return self._call("status", "getProcessInfo", self.name)["statename"]

    def pid(self):
        """The program's process ID, or None when it does not run."""
        return positive_pid(self._call("status", "getProcessInfo", self.name).get("pid"))

    def stop(self):
        # wait=True: supervisord answers once the program has stopped (or was killed).
        self._call("stop", "stopProcess", self.name, True, ok=(NOT_RUNNING,))

    def start(self):
        # wait=False: the spawn is under way; ServiceController polls until it runs or fails.
        self._call("start", "startProcess", self.name, False, ok=(ALREADY_STARTED, SPAWN_ERROR))

    def failure_detail(self):
        """The last lines of the program's stderr log, else of its stdout log, or None."""
        for stream, method in (
            ("stderr", "tailProcessStderrLog"),
            ("stdout", "tailProcessStdoutLog"),
        ):
            try:
                text = self._call("tail", method, self.name, 0, TAIL_BYTES)[0]
            except ServiceError:
                continue
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if lines:
                distinct = list(dict.fromkeys(reversed(lines)))[::-1]
                return f"last {stream}: " + " | ".join(distinct[-STDERR_TAIL_LINES:])
        return None

    def _call(self, action, method, *args, ok=()):
        try:
            return getattr(self.proxy.supervisor, method)(*args)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode in ok:
                return None
            if fault.faultCode == BAD_NAME:
                cause = f"supervisord ({self.config}) has no program named {self.name}"
            else:
                cause = f"supervisord refused to {action} {self.name}: {fault.faultString}"
            raise ServiceError(cause, service=self.name, config=self.config) from None
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as error:
            raise ServiceError(
                f"cannot reach supervisord at {self.url} ({self.config}) to {action} "
                f"{self.name}: {error}; is it running?",
                service=self.name,
                config=self.config,
            ) from None
