"""The environment the integration tests run in is the one they claim to test.

`make py311` runs these tests with .venv311's pytest: the ansible-playbook they start must then
be .venv311's too, on Python 3.11, and its ansible-core must be one meta/runtime.yml admits.
"""

import re
import subprocess
import sys
from pathlib import Path

import yaml
from ansible.release import __version__ as ansible_core_version
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[2]


def test_ansible_playbook_is_the_one_of_the_python_that_runs_the_tests(idle_lab):
    out = subprocess.run(
        ["ansible-playbook", "--version"],
        env=idle_lab.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    core = re.search(r"\[core ([^\]]+)\]", out)[1]
    python = re.search(r"python version = (\d+)\.(\d+)\.\S+ .*\((\S+)\)$", out, re.MULTILINE)
    assert core == ansible_core_version, out
    assert (int(python[1]), int(python[2])) == sys.version_info[:2], out
    assert Path(python[3]).parent == Path(sys.executable).parent, out


def test_meta_runtime_admits_the_ansible_core_under_test():
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text(encoding="utf-8"))

    assert ansible_core_version in SpecifierSet(runtime["requires_ansible"])
