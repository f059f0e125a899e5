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
        """Run a playbook; return (returncode, output, recap per host)."""
        cmd = ["ansible-playbook", "-i", str(INVENTORY), str(REPO / "playbooks" / name), *args]
        proc = subprocess.run(
            cmd, check=False, env=self.env, capture_output=True, text=True, cwd=REPO
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


@pytest.fixture(scope="module")
def lab(tmp_path_factory, worker_base_port):
    lab = Lab(tmp_path_factory.mktemp("lab"), worker_base_port)
    lab.labctl("up")
    yield lab
    lab.labctl("down", check=False)


@pytest.fixture(scope="module")
def worker_base_port(request):
    # Separate port ranges per test module keep labs from colliding when modules run in
    # parallel; the demo lab keeps 18600.
    modules = sorted(p.name for p in Path(__file__).parent.glob("test_*.py"))
    index = modules.index(Path(request.module.__file__).name)
    return 19000 + 100 * index
