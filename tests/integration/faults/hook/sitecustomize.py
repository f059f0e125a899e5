# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only fault point inside a module run, loaded through PYTHONPATH by the fault tests.

test_faults.py runs the modules with an interpreter wrapper that puts this directory first on
PYTHONPATH, so Python imports this file at start-up. It watches the interpreter's audit events
and wraps xmlrpc.client's requests (no hook in the collection's code; supervisord is driven
over XML-RPC, or with supervisorctl when asked) and, in the ivr_service_files module only,
acts once at the point FAULT_HOOK_POINT names:

    after_stop            freeze once supervisord's stop returned
    mid_swap              freeze at the rename that moves the staging tree, the second rename
                          of the swap: the journal is written and the first rename is done
    before_start          freeze right before the start is asked for
    kill_service_at_stop  SIGKILL the service (FAULT_SERVICE_PID) instead of letting the stop
                          end it gracefully, then carry on

To freeze, it writes FAULT_FIRED and stops its own process with SIGSTOP; the test then kills
the whole ansible-playbook process tree, which is what a run killed at that point leaves.
"""

import os
import re
import signal
import sys
import time

POINT = os.environ.get("FAULT_HOOK_POINT", "")
FIRED = os.environ.get("FAULT_FIRED", "")
PROGRAM = os.environ.get("FAULT_PROGRAM", "")
STAGING_TREE = re.compile(r"/\.updater/staging/[a-z][a-z0-9_]*-\d+$")

_state = {"busy": False, "done": False, "stopped": False}


def _fire(what):
    _state["done"] = True
    with open(FIRED, "w", encoding="utf-8") as handle:
        handle.write(what)


def _freeze(what):
    _fire(what)
    os.kill(os.getpid(), signal.SIGSTOP)


def _supervisorctl_action(args):
    """The action of a `supervisorctl -c CONF ACTION PROGRAM` command line, else None."""
    # AnsibleModule.run_command hands Popen its arguments as bytes.
    words = [os.fsdecode(word) for word in (args[1] or [])] if len(args) > 1 else []
    is_ours = len(words) >= 5 and os.path.basename(words[0]).startswith("supervisorctl")
    return words[3] if is_ours and words[4] == PROGRAM else None


def _on_popen(args):
    action = _supervisorctl_action(args)
    if POINT == "after_stop":
        if _state["stopped"]:
            _freeze("after the stop")
        elif action == "stop":
            _state["stopped"] = True
    elif POINT == "before_start" and action == "start":
        _freeze("before the start")
    elif POINT == "kill_service_at_stop" and action == "stop":
        _kill_service()


def _on_rpc(method, params, done):
    """supervisord's XML-RPC, which the swap module uses when the configuration names a socket."""
    if not params or params[0] != PROGRAM:
        return
    if POINT == "after_stop" and done and method == "supervisor.stopProcess":
        _freeze("after the stop")
    elif POINT == "before_start" and not done and method == "supervisor.startProcess":
        _freeze("before the start")
    elif POINT == "kill_service_at_stop" and not done and method == "supervisor.stopProcess":
        _kill_service()


def _kill_service():
    pid = int(os.environ["FAULT_SERVICE_PID"])
    os.kill(pid, signal.SIGKILL)
    # Give supervisord a moment to reap it, so the stop meets a service that died.
    time.sleep(0.5)
    _fire(f"killed service pid {pid} at the stop")


def _wrap_rpc():
    import xmlrpc.client  # noqa: PLC0415 - only the module processes of a fault run need it

    request = xmlrpc.client.ServerProxy._ServerProxy__request

    def watched(proxy, method, params):
        if not _state["done"]:
            _on_rpc(method, params, done=False)
        result = request(proxy, method, params)
        if not _state["done"]:
            _on_rpc(method, params, done=True)
        return result

    xmlrpc.client.ServerProxy._ServerProxy__request = watched


def _on_rename(args):
    # The swap's renames move whole trees; only the staging tree's path matches this.
    if POINT == "mid_swap" and STAGING_TREE.search(os.fsdecode(args[0])):
        _freeze("in the middle of the swap")


def _hook(event, args):
    if _state["done"] or _state["busy"]:
        return

    _state["busy"] = True
    try:
        if event == "subprocess.Popen":
            _on_popen(args)
        elif event == "os.rename":
            _on_rename(args)
    finally:
        _state["busy"] = False


if POINT and FIRED and "ivr_service_files" in os.path.basename(sys.argv[0] if sys.argv else ""):
    sys.addaudithook(_hook)
    _wrap_rpc()
