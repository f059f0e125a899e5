"""Helpers of test_faults.py and test_rollback.py: a one-host lab, patches built in the test,
runs that a fault point freezes before the test kills them, and the checks of a settled host.

Every process killed here is a descendant of an ansible-playbook the test started, found by
walking /proc; the lab's services are killed by the pid supervisord reports for them.
"""

import configparser
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import INVENTORY, RECAP, REPO, Lab

HOST = "ivr01"
MODULE = "ivr_inbound"
PROGRAM = "ivr01_inbound"
FAULTS = Path(__file__).resolve().parent / "faults"
SWAP_TASK = "Stop the services, swap the staged files in and start the services"
COMMIT_TASK = "Record the module's new manifest ID on the host"
RUN_TIMEOUT = 600

# One host, one module: short runs, with the role's lease of 900 s. A run killed after the
# grant leaves the lease held; the next run must release it from the host's record rather
# than wait it out, which NEXT_RUN_ARGS leaves no time for.
RUN_ARGS = (
    "-e",
    f"update_ivr_hosts={HOST}",
    "-e",
    "remote_ivr_update_start_timeout=10",
)
# The services have no calls: a run that finds them open gets permission at its first poll.
# Three polls about 7 s apart are far shorter than a 900 s lease.
NEXT_RUN_ARGS = ("-e", "remote_ivr_update_permission_retries=3")


def start_lab(directory, base_port):
    """A lab with one IVR host whose services never have a call, so permission is immediate."""
    lab = Lab(directory, base_port)
    scratch = Path(directory, "scratch")
    scratch.mkdir(parents=True, exist_ok=True)
    # A killed run leaves its temporary files behind; keep them inside the lab directory.
    lab.env.update(
        ANSIBLE_REMOTE_TMP=str(scratch / "remote"),
        ANSIBLE_LOCAL_TEMP=str(scratch / "local"),
        TMPDIR=str(scratch),
    )
    try:
        lab.labctl("up", "--hosts", HOST, "--load", "0")
    except subprocess.CalledProcessError:
        # A half-started lab (a port taken, say) still has its supervisord: stop it.
        lab.labctl("down", check=False)
        raise
    return lab


def _apply_patch():
    collections = str(REPO / ".build" / "collections")
    if collections not in sys.path:
        sys.path.insert(0, collections)
    from ansible_collections.prairiefyre.updater.plugins.module_utils.patch import (  # noqa: PLC0415
        apply_patch,
    )

    return apply_patch


def publish(lab, number, broken=False, remove=(), reports=None):
    """Apply a patch of module ivr_inbound, version 6.3.2.<number>, to the lab's enterprise.

    A broken one carries a file BROKEN, which makes the simulator refuse to start (exit 3).
    With reports, its version.txt says that version instead, which the simulator then reports.
    Returns the version and manifest ID it publishes.
    """
    version = f"6.3.2.{number}"
    manifest_id = 1100 + number
    bundle = lab.dir / "bundles" / f"case-{number}"
    files = bundle / "files" / MODULE
    files.mkdir(parents=True)
    (files / "version.txt").write_text((reports or version) + "\n", encoding="utf-8")
    (files / "Inbound.dll").write_bytes(f"Inbound {version}\n".encode() * 64)
    (files / "Prompts").mkdir()
    (files / "Prompts" / f"case-{number}.txt").write_text(f"prompt {number}\n", encoding="utf-8")
    if broken:
        (files / "BROKEN").write_text("this build refuses to start\n", encoding="utf-8")

    entry = {"manifest_id": manifest_id, "version": version, "files": {}}
    if remove:
        entry["remove"] = list(remove)
    patch = {
        "format": 1,
        "patch_id": f"case-{number}",
        "product_version": version,
        "modules": {MODULE: entry},
    }
    (bundle / "patch.json").write_text(json.dumps(patch, indent=2) + "\n", encoding="utf-8")
    subprocess.run(
        [sys.executable, str(REPO / "lab" / "make_bundle.py"), str(bundle)],
        check=True,
        capture_output=True,
    )
    _apply_patch()(str(lab.dir / "enterprise" / "dist"), str(bundle))
    return version, manifest_id


def _callbacks_enabled():
    config = configparser.ConfigParser()
    config.read(REPO / "ansible.cfg")
    enabled = config.get("defaults", "callbacks_enabled", fallback="")
    return ",".join(
        [name.strip() for name in enabled.split(",") if name.strip()] + ["fault_injector"]
    )


def callback_fault(lab, task, when, action):
    """Environment of a run that the fault_injector callback breaks at a task boundary."""
    return {
        "ANSIBLE_CALLBACK_PLUGINS": str(FAULTS / "callback"),
        "ANSIBLE_CALLBACKS_ENABLED": _callbacks_enabled(),
        "FAULT_TASK": task,
        "FAULT_WHEN": when,
        "FAULT_ACTION": action,
        "FAULT_PROGRAM": PROGRAM,
        "FAULT_SUPERVISOR_CONF": str(lab.dir / "supervisord.conf"),
        "FAULT_SUPERVISORCTL": str(Path(sys.executable).parent / "supervisorctl"),
    }


def hook_fault(lab, point):
    """Environment and arguments of a run that the audit hook breaks inside the swap module."""
    shim = lab.dir / "fault-python"
    shim.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH='{FAULTS / 'hook'}'${{PYTHONPATH:+:$PYTHONPATH}} "
        f"exec '{sys.executable}' \"$@\"\n",
        encoding="utf-8",
    )
    shim.chmod(0o755)
    env = {"FAULT_HOOK_POINT": point, "FAULT_PROGRAM": PROGRAM}
    if point == "kill_service_at_stop":
        env["FAULT_SERVICE_PID"] = lab.pids()[PROGRAM]
    return env, ("-e", f"ansible_python_interpreter={shim}")


def _children():
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    return children


def _tree(root):
    children, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _signal(pids, signum):
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def kill_tree(root):
    """SIGKILL an ansible-playbook and every process below it, as a crash of the run would.

    Ansible's workers start sessions of their own, so a process group kill would miss them.
    The tree is stopped first, so that nothing forks between the listing and the kill.
    """
    for _attempt in range(3):
        _signal(_tree(root), signal.SIGSTOP)
    _signal(_tree(root), signal.SIGKILL)


def run(lab, *args, env=None, freeze=False, log_name="run"):
    """Run update_ivr.yml; with ``freeze``, kill the run once the fault point fired.

    Returns (returncode, output, recap, fired) where fired is what the fault point wrote.
    """
    fired_path = lab.dir / "fault-fired"
    fired_path.unlink(missing_ok=True)
    env = {**lab.env, **(env or {}), "FAULT_FIRED": str(fired_path)}
    command = [
        "ansible-playbook",
        "-i",
        str(INVENTORY),
        str(REPO / "playbooks" / "update_ivr.yml"),
        *RUN_ARGS,
        *args,
    ]
    log = lab.dir / f"{log_name}.log"
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + RUN_TIMEOUT
        while process.poll() is None:
            if (freeze and fired_path.exists()) or time.monotonic() > deadline:
                kill_tree(process.pid)
            time.sleep(0.05)

    output = log.read_text(encoding="utf-8", errors="replace")
    recap = {
        m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
        for m in RECAP.finditer(output)
    }
    fired = fired_path.read_text(encoding="utf-8") if fired_path.exists() else None
    return process.returncode, output, recap, fired


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def installed_tree(lab):
    top = lab.host_dir(HOST) / "install" / "IVR" / "Inbound"
    return {
        path.relative_to(top).as_posix(): {"size": path.stat().st_size, "sha256": _sha256(path)}
        for path in sorted(top.rglob("*"))
        if path.is_file()
    }


def settled_problems(lab, version, manifest_id):
    """What keeps the host from having settled on this version; empty when it has."""
    problems = []
    state = lab.labctl("ctl", "status", PROGRAM, check=False).stdout
    if "RUNNING" not in state:
        problems.append(f"{PROGRAM} is not running: {state.strip()}")
    else:
        reported = lab.service_status(HOST, "inbound")["version"]
        if reported != version:
            problems.append(f"{PROGRAM} reports {reported}, not {version}")

    package = lab.enterprise_manifest()["modules"][MODULE]
    if installed_tree(lab) != package["files"]:
        problems.append(f"the installed files are not those of manifest ID {manifest_id}")

    recorded = lab.record(HOST)["modules"][MODULE]["manifest_id"]
    if recorded != manifest_id:
        problems.append(f"the host records manifest ID {recorded}, not {manifest_id}")

    journal = lab.host_dir(HOST) / "install" / ".updater" / "journal" / f"{MODULE}.json"
    if journal.exists():
        problems.append(f"{journal} is still there")

    leases = lab.host_dir(HOST) / "install" / ".updater" / "leases"
    left = sorted(path.name for path in leases.glob("*.json")) if leases.exists() else []
    if left:
        problems.append(f"lease records left in {leases}: {', '.join(left)}")
    for service in ("inbound", "outbound", "upiq"):
        mode = lab.service_status(HOST, service)["mode"]
        if mode != "open":
            problems.append(f"{HOST} {service} is {mode}, not open to calls")
    return problems
