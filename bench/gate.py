# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How long the permission gate waits on a busy service: the seed's policy against ours.

    .venv/bin/python bench/gate.py [--seeds 20] [--ports 16] [--load 0.4] [--mean-call 210]

Each run puts one simulated IVR service (the lab simulator's CallEngine, no HTTP, no real time)
in its long-run state and lets two updaters ask it for the permission to stop, side by side on
identical copies of the service (same seed, so the same calls are in progress at the start):

- seed: ask every 600 s, granted only when every port is idle; the service keeps taking calls
  meanwhile. It is simulated to the grant however long that takes, not capped.
- ours: the role's drain mode with its defaults: the first poll stops new calls, each poll keeps
  asking for 30 s (the module's short wait, every 0.5 s), polls are 5 s apart, the drain's
  deadline is 1800 s. The requests go through the collection's own StatusClient.

A clock that moves only when the updater sleeps makes weeks of simulated time take seconds:
the engine jumps from event to event. After each grant the updater stops the service 5 s later
(the tasks between grant and stop); calls cut off by that stop are the dropped calls.

The last line is machine-readable:
    gate: speedup=<seed wait / our wait> dropped=<calls ours dropped>
          wait_over_longest_call=<worst our wait / longest call in progress at the start>
where "longest call in progress at the start" is the time until the last call that was up at
the first poll ends: no updater that drops no call can be granted sooner.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "lab"))


def _import_status():
    """Import the collection's status client through a link named like an installed one."""
    root = tempfile.mkdtemp(prefix="prairiefyre-bench-")
    link = Path(root, "ansible_collections", "prairiefyre", "updater")
    link.parent.mkdir(parents=True)
    link.symlink_to(REPO, target_is_directory=True)
    sys.path.insert(0, root)
    # Imported here: the package path exists only once the link above is made.
    from ansible_collections.prairiefyre.updater.plugins.module_utils import (  # noqa: PLC0415
        status,
    )

    return status


st = _import_status()
from ivr_simulator import CallEngine  # noqa: E402

SEED_DELAY = 600.0
OUR_WAIT = 30
OUR_DELAY = 5.0
OUR_RETRIES = 144
LEASE_SECONDS = 900
DRAIN_DEADLINE = 1800
GRANT_TO_STOP = 5.0
# Only a guard against a run that never ends; the output says so if a run reaches it.
SEED_LIMIT = 10 * 365 * 86400.0
SERVICE = "IVR Inbound"


class FakeClock:
    """Simulated seconds; sleep() moves them on at once."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class EngineSource:
    """The StatusClient's source, answering from a CallEngine instead of over HTTP."""

    keeps_leases = True

    def __init__(self, engine):
        self.engine = engine
        self.asked = 0

    def status(self):
        return st.parse_status({"service": SERVICE, **self.engine.status()}, SERVICE)

    def permission(self, lease_seconds):
        return self._answer(self.engine.request_permission(lease_seconds))

    def drain(self, deadline_seconds, lease_seconds):
        return self._answer(self.engine.drain(deadline_seconds, lease_seconds))

    def release(self, lease_id):
        return self._answer(self.engine.release(lease_id))

    def _answer(self, data):
        self.asked += 1
        lease = data.get("lease") or {}
        return st.Answer(
            st.parse_status({"service": SERVICE, **data}, SERVICE),
            granted=data.get("granted", False),
            lease_id=lease.get("id") if data.get("granted") else None,
            lease_expires_in=lease.get("expires_in"),
            reason=data.get("reason"),
            drain_expired=data.get("drain_expired", False),
            released=data.get("released", False),
        )


def new_service(args, seed):
    clock = FakeClock()
    engine = CallEngine(args.ports, args.load, args.mean_call, clock, seed=seed, sigma=args.sigma)
    return clock, engine


def last_call_end(engine):
    """Seconds from now until the last call in progress ends."""
    ends = [port.end for port in engine.ports if port.busy]
    return max(ends) - engine.now if ends else 0.0


def stop_after_grant(clock, engine):
    """Stop the service as the role would, a few seconds after the grant; return drops."""
    clock.sleep(GRANT_TO_STOP)
    return engine.stop()


def run_seed_policy(args, seed):
    clock, engine = new_service(args, seed)
    client = st.StatusClient(SERVICE, EngineSource(engine), clock=clock, sleep=clock.sleep)
    polls = 0
    while True:
        polls += 1
        if client.request_permission(LEASE_SECONDS).granted:
            break

        if clock.now >= SEED_LIMIT:
            return {"wait": clock.now, "polls": polls, "capped": True, "dropped": 0}

        clock.sleep(SEED_DELAY)

    wait = clock.now
    return {
        "wait": wait,
        "polls": polls,
        "capped": False,
        "dropped": stop_after_grant(clock, engine),
    }


def run_our_policy(args, seed):
    clock, engine = new_service(args, seed)
    longest = last_call_end(engine)
    source = EngineSource(engine)
    client = st.StatusClient(SERVICE, source, clock=clock, sleep=clock.sleep)
    polls = 0
    while True:
        polls += 1
        outcome = client.drain(DRAIN_DEADLINE, LEASE_SECONDS, wait_seconds=OUR_WAIT)
        if outcome.granted or outcome.drain_expired or polls > OUR_RETRIES:
            break

        clock.sleep(OUR_DELAY)

    wait = clock.now
    granted = outcome.granted
    dropped = stop_after_grant(clock, engine) if granted else 0
    return {
        "wait": wait,
        "polls": polls,
        "asked": source.asked,
        "granted": granted,
        "longest": longest,
        "dropped": dropped,
        "deferred": engine.calls_deferred,
    }


def human(seconds):
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.0f} s"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--seeds", type=int, default=20, help="runs, one seed each (20)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--ports", type=int, default=16)
    parser.add_argument("--load", type=float, default=0.4, help="share of time a port is busy")
    parser.add_argument(
        "--mean-call", type=float, default=210.0, help="mean call length in seconds (210)"
    )
    parser.add_argument(
        "--sigma", type=float, default=1.0, help="lognormal spread of call lengths (1.0)"
    )
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    print(
        f"gate bench: {args.ports} ports at {args.load:.0%} load, lognormal calls of mean "
        f"{args.mean_call:.0f} s (sigma {args.sigma}), {args.seeds} seeds"
    )
    print(
        f"seed policy: poll every {SEED_DELAY:.0f} s, grant only when all ports are idle, "
        "run to the grant (no cap)"
    )
    print(
        f"our policy: drain, {OUR_WAIT} s wait inside each poll, polls {OUR_DELAY:.0f} s apart, "
        f"deadline {DRAIN_DEADLINE} s, lease {LEASE_SECONDS} s"
    )
    header = (
        f"{'seed':>4}  {'seed wait':>10}  {'polls':>6}  {'our wait':>8}  {'polls':>5}  "
        f"{'longest':>7}  {'ratio':>5}  {'dropped':>7}  {'turned away':>11}"
    )
    print(header)
    print("-" * len(header))
    seeds, ours = [], []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        theirs = run_seed_policy(args, seed)
        mine = run_our_policy(args, seed)
        seeds.append(theirs)
        ours.append(mine)
        ratio = mine["wait"] / mine["longest"] if mine["longest"] else 1.0
        mine["ratio"] = ratio
        capped = " (capped)" if theirs["capped"] else ""
        expired = "" if mine["granted"] else " drain deadline passed, not granted"
        print(
            f"{seed:>4}  {human(theirs['wait']):>10}  {theirs['polls']:>6}  "
            f"{mine['wait']:>7.0f}s  {mine['polls']:>5}  {mine['longest']:>6.0f}s  {ratio:>5.2f}  "
            f"{mine['dropped']:>7}  {mine['deferred']:>11}{capped}{expired}"
        )

    granted = [run for run in ours if run["granted"]]
    seed_total = sum(run["wait"] for run in seeds)
    our_total = sum(run["wait"] for run in granted) or 1.0
    speedup = (seed_total / len(seeds)) / (our_total / max(len(granted), 1))
    dropped = sum(run["dropped"] for run in ours)
    worst = max((run["ratio"] for run in granted), default=float("nan"))
    print()
    print(
        f"seed policy: mean wait {human(seed_total / len(seeds))}, median "
        f"{human(statistics.median(run['wait'] for run in seeds))}, "
        f"{sum(run['polls'] for run in seeds)} polls in all, "
        f"{sum(run['dropped'] for run in seeds)} calls dropped"
        + (", some runs CAPPED at 10 years" if any(run["capped"] for run in seeds) else "")
    )
    print(
        f"our policy: mean wait {human(our_total / max(len(granted), 1))}, "
        f"{len(granted)}/{len(ours)} granted before the deadline, "
        f"wait/longest call mean {statistics.mean(run['ratio'] for run in granted):.3f} "
        f"worst {worst:.3f}, {dropped} calls dropped, "
        f"{sum(run['deferred'] for run in ours)} new calls turned away while draining"
    )
    print(
        "speedup is the seed's mean wait over ours; wait_over_longest_call is the worst run's "
        "wait over the time its last call in progress at the start took to end"
    )
    print(f"gate: speedup={speedup:.0f} dropped={dropped} wait_over_longest_call={worst:.3f}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
