"""Fixtures that run the real playbooks against a lab of their own.

Each test session starts its own lab (own directory, own ports) so it never touches the demo
lab, and stops it at the end by the lab's own supervisorctl.
"""

import json
import os
import urllib.request
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LABCTL = REPO / "lab" / "labctl.py"
INVENTORY = REPO / "inventory" / "lab"
RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


class Lab:
    """One lab: its directory, ports and the commands that drive it."""

    def __init__(self, lab_dir, base_port):
        self.dir = Path(lab_dir)
        self.base_port = base_port
        self.env = dict(
            os.environ,
            PRAIRIEFYRE_LAB_DIR=str(self.dir),
            PRAIRIEFYRE_LAB_BASE_PORT=str(base_port),
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_NOCOLOR="1",
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        )

    def labctl(self, *args, check=True):
        # labctl reads the lab's directory and ports from the environment set above.
        cmd = [sys.executable, str(LABCTL), *args]
        return subprocess.run(cmd, env=self.env, check=check, capture_output=True, text=True)

    def playbook(self, name, *args):
        """Run a playbook of the checkout; return (returncode, output, recap per host)."""
        return self.run_playbook(str(REPO / "playbooks" / name), *args)

    def run_playbook(self, playbook, *args, inventory=INVENTORY, env=None, cwd=REPO):
        """Run a playbook (a path or an FQCN), with `env` over the lab's environment."""
        cmd = ["ansible-playbook", "-i", str(inventory), playbook, *args]
        proc = subprocess.run(
            cmd,
            check=False,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            cwd=cwd,
        )
        output = proc.stdout + proc.stderr
        recap = {
            m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
            for m in RECAP.finditer(output)
        }
        return proc.returncode, output, recap

    def host_dir(self, host):
        return self.dir / "hosts" / host

    def pids(self):
        """supervisord's pid of every program, to prove which services were restarted."""
        out = self.labctl("ctl", "status", check=False).stdout
        return dict(re.findall(r"^(\S+)\s+RUNNING\s+pid (\d+)", out, re.MULTILINE))

    def service_status(self, host, service):
        """The simulator's own /status answer for one service of one lab host."""
        index = int(host.removeprefix("ivr"))
        offset = ("inbound", "outbound", "upiq").index(service)
        url = f"http://127.0.0.1:{self.base_port + 10 * index + offset}/status"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return json.load(answer)

    def record(self, host):
        path = self.host_dir(host) / "install" / ".updater" / "manifest.json"
        return json.loads(path.read_text(encoding="utf-8"))

    def enterprise_manifest(self):
        path = self.dir / "enterprise" / "dist" / "manifest.json"
        return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def idle_lab(tmp_path):
    """A lab that is never started: its environment, for running the tools the tests use."""
    return Lab(tmp_path, 0)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, worker_base_port):
    lab = Lab(tmp_path_factory.mktemp("lab"), worker_base_port)
    up = lab.labctl("up", check=False)
    if up.returncode != 0:
        # supervisord may run although a program did not start (a port in use): stop it
        # before pytest removes the directory that holds its pid file.
        lab.labctl("down", check=False)
        pytest.fail(f"labctl up failed (exit {up.returncode}):\n{up.stdout}{up.stderr}")

    yield lab
    lab.labctl("down", check=False)


# Each test module that starts a lab owns the 100 ports from the base port (19000, or
# PRAIRIEFYRE_TEST_BASE_PORT) plus its offset; a lab uses base + 10 * host + service, so 100
# ports hold 9 hosts. The offsets are fixed here rather than derived from the list of files,
# so a module added later never moves another module's lab (a session already running keeps
# its ports). A module not listed gets an offset from 1000 up, by its place among those.
LAB_PORT_OFFSETS = {
    "test_galaxy.py": 0,
    "test_manifests.py": 100,
    "test_update_flow.py": 200,
    "test_faults.py": 300,
    "test_rollback.py": 400,
    "test_awx.py": 1100,
    "test_fleet.py": 1200,
    "test_environment.py": 1300,
    # test_gate.py starts its labs itself, at the base port + 1700 and + 1750.
    "test_gate.py": 1700,
}
UNLISTED_PORT_OFFSET = 2000


def lab_port_offset(name):
    if name in LAB_PORT_OFFSETS:
        return LAB_PORT_OFFSETS[name]

    unlisted = sorted(
        p.name for p in Path(__file__).parent.glob("test_*.py") if p.name not in LAB_PORT_OFFSETS
    )
    return UNLISTED_PORT_OFFSET + 100 * unlisted.index(name)


@pytest.fixture(scope="module")
def worker_base_port(request):
    # Separate port ranges per test module keep labs from colliding when modules run in
    # parallel; the demo lab keeps 18600. PRAIRIEFYRE_TEST_BASE_PORT moves the whole range,
    # so two checkouts can run their tests side by side.
    offset = lab_port_offset(Path(request.module.__file__).name)
    return int(os.environ.get("PRAIRIEFYRE_TEST_BASE_PORT") or 19000) + offset
