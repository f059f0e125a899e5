"""Kill the run, or the service, at every step of an update; the next run must settle the host.

Each case publishes a new version of module ivr_inbound and runs update_ivr.yml against a
one-host lab with one fault:

- the run killed (SIGKILL of ansible-playbook and every process below it) before the stop,
  after the stop, between the two renames of the swap, before the start, after the start, and
  before the manifest ID is recorded;
- the service killed (SIGKILL of the simulator) before the stop, at the stop, after the start,
  and before the manifest ID is recorded. Between the stop and the start there is no service
  process to kill.

Faults at task boundaries come from the test-only callback faults/callback/fault_injector.py;
the ones inside the module run that stops, swaps and starts come from faults/hook, an audit
hook loaded into the module's interpreter. The collection's code has no test hook.

Then a second run without a fault must leave the service running the new version, the
installed files equal to that version's files and the ID recorded, and a third run must
change nothing. The last test prints `faults: converged=<n>/<total>`.
"""

import pytest

from fault_kit import (
    COMMIT_TASK,
    HOST,
    NEXT_RUN_ARGS,
    PROGRAM,
    SWAP_TASK,
    callback_fault,
    hook_fault,
    publish,
    run,
    settled_problems,
    start_lab,
)

CASES = [
    ("run killed before the stop", "callback", (SWAP_TASK, "start", "freeze")),
    ("run killed after the stop", "hook", "after_stop"),
    ("run killed in the middle of the swap", "hook", "mid_swap"),
    ("run killed before the start", "hook", "before_start"),
    ("run killed after the start", "callback", (SWAP_TASK, "end", "freeze")),
    ("run killed before the ID is recorded", "callback", (COMMIT_TASK, "start", "freeze")),
    ("service killed before the stop", "callback", (SWAP_TASK, "start", "kill_service")),
    ("service killed at the stop", "hook", "kill_service_at_stop"),
    ("service killed after the start", "callback", (SWAP_TASK, "end", "kill_service")),
    (
        "service killed before the ID is recorded",
        "callback",
        (COMMIT_TASK, "start", "kill_service"),
    ),
]

OUTCOMES = {}


@pytest.fixture(scope="module")
def lab(tmp_path_factory, worker_base_port):
    lab = start_lab(tmp_path_factory.mktemp("faults"), worker_base_port)
    yield lab
    lab.labctl("down", check=False)


def _fault(lab, kind, spec):
    if kind == "callback":
        task, when, action = spec
        return callback_fault(lab, task, when, action), (), action == "freeze"
    env, args = hook_fault(lab, spec)
    return env, args, spec != "kill_service_at_stop"


@pytest.mark.parametrize(
    ("number", "name", "kind", "spec"),
    [pytest.param(n, *case, id=case[0].replace(" ", "-")) for n, case in enumerate(CASES, 1)],
)
def test_the_next_run_settles_the_host(lab, number, name, kind, spec):
    OUTCOMES[name] = ["the case did not finish"]
    version, manifest_id = publish(lab, number)
    env, args, freeze = _fault(lab, kind, spec)

    _rc, out, _recap, fired = run(lab, *args, env=env, freeze=freeze, log_name=f"{number}-fault")
    OUTCOMES[name] = [] if fired else ["the fault point was never reached"]
    assert fired, f"{name}: the fault point was never reached\n{out[-3000:]}"

    rc, out, recap = run(lab, *NEXT_RUN_ARGS, log_name=f"{number}-next")[:3]
    problems = [] if rc == 0 else [f"the next run failed (rc {rc})"]
    problems += settled_problems(lab, version, manifest_id)
    pids = lab.pids()

    rc, again, recap = run(lab, log_name=f"{number}-again")[:3]
    if (rc, recap.get(HOST, {}).get("changed")) != (0, 0):
        problems.append(f"the run after that reported rc {rc}, {recap.get(HOST)}")
    if lab.pids().get(PROGRAM) != pids.get(PROGRAM):
        problems.append("the run after that restarted the service")

    OUTCOMES[name] = problems
    assert not problems, f"{name} ({fired}): {problems}\n{out[-3000:]}"


def test_every_fault_converged(capsys):
    converged = sum(1 for problems in OUTCOMES.values() if not problems)

    with capsys.disabled():
        print(f"\nfaults: converged={converged}/{len(CASES)}")

    assert converged == len(CASES), {name: p for name, p in OUTCOMES.items() if p}
