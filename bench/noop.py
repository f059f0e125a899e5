"""How much a scheduled update costs when there is nothing to update.

Starts a lab of N up-to-date IVR hosts (50 by default, 3 simulators each, under one
supervisord), then times, in the same run and alternating, `update_ivr.yml` and
`ansible -m ansible.builtin.ping` against the same hosts. The ping is the floor: one module
run per host. Prints each round, the medians, and as its last line

    noop: ratio=<median update_ivr time / median ping time>

The goal is at most 1.5. The line before it gives the same ratio of CPU time, which other
work on the machine disturbs less. This is a measurement, not a test: nothing asserts a time.
Figures and where the time goes: docs/performance.md.

    .venv/bin/python bench/noop.py                   # 50 hosts, 3 rounds, lab under /tmp
    .venv/bin/python bench/noop.py --hosts 10 --rounds 5 --keep

Host i serves on BASE + 10*i + j (lab/README.md), so 50 hosts on the default base 19500 use
ports 19500 to 20002 on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LABCTL = REPO / "lab" / "labctl.py"
BIN = Path(sys.executable).parent
RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def host_names(count: int) -> list[str]:
    return [f"ivr{i:02d}" for i in range(1, count + 1)]


def write_inventory(lab_dir: Path, hosts: list[str]) -> Path:
    """An inventory of the lab's hosts that reuses inventory/lab's group variables."""
    inventory = lab_dir / "bench-inventory"
    inventory.mkdir(parents=True, exist_ok=True)

    group_vars = inventory / "group_vars"
    if not group_vars.is_symlink():
        group_vars.symlink_to(REPO / "inventory" / "lab" / "group_vars")

    lines = [
        "all:",
        "  vars:",
        "    ansible_connection: local",
        '    ansible_python_interpreter: "{{ ansible_playbook_python }}"',
        "  children:",
        "    ivr_servers:",
        "      hosts:",
    ]
    for index, host in enumerate(hosts, start=1):
        lines += [f"        {host}:", f"          lab_index: {index}"]
    (inventory / "hosts.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return inventory / "hosts.yml"


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cmd: list[str], env: dict, what: str) -> tuple[float, float, str]:
    """Run `cmd` from the checkout; return (wall seconds, CPU seconds, output).

    The CPU time is that of the whole process tree (ansible, its workers, every module run),
    which other work on the machine disturbs far less than the wall time.
    """
    cpu_before = cpu_of_children()
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    cpu = cpu_of_children() - cpu_before

    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        sys.exit(f"noop: {what} failed (exit {proc.returncode}):\n{output[-3000:]}")
    return elapsed, cpu, output


def check_no_op(output: str, hosts: list[str]) -> None:
    """Every host was checked and none changed: otherwise the figures mean something else."""
    recap = {m[1]: (int(m[2]), int(m[3]), int(m[4])) for m in RECAP.finditer(output)}
    missing = [host for host in hosts if host not in recap]
    changed = [host for host in hosts if host in recap and recap[host] != (0, 0, 0)]
    if missing or changed:
        sys.exit(f"noop: update_ivr.yml was not a no-op: missing {missing}, changed {changed}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--hosts", type=int, default=50, help="lab hosts (50)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each (3)")
    parser.add_argument("--base-port", type=int, default=19500, help="lab base port (19500)")
    parser.add_argument(
        "--lab-dir", default="/tmp/prairiefyre-bench-noop", help="lab directory (created)"
    )
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    parser.add_argument(
        "--playbook",
        default="playbooks/update_ivr.yml",
        help="update playbook to time; another version with ANSIBLE_COLLECTIONS_PATH",
    )
    args = parser.parse_args(argv)

    hosts = host_names(args.hosts)
    lab_dir = Path(args.lab_dir)
    env = dict(
        os.environ,
        PRAIRIEFYRE_LAB_DIR=str(lab_dir),
        PRAIRIEFYRE_LAB_BASE_PORT=str(args.base_port),
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    labctl = [sys.executable, str(LABCTL)]

    # 150 simulators take a while to answer on a small machine.
    up_seconds, _up_cpu, _up_output = run(
        [*labctl, "up", "--hosts", ",".join(hosts), "--timeout", "300"], env, "labctl up"
    )
    print(f"noop: lab of {len(hosts)} hosts up in {up_seconds:.1f} s ({lab_dir})", flush=True)
    try:
        inventory = str(write_inventory(lab_dir, hosts))
        update = ["ansible-playbook", "-i", inventory, args.playbook]
        ping = ["ansible", "-i", inventory, "ivr_servers", "-m", "ansible.builtin.ping"]

        # One untimed run of each warms the caches (bytecode, the controller's package cache)
        # and proves the hosts are up to date.
        _warm_wall, _warm_cpu, output = run(update, env, "update_ivr.yml")
        check_no_op(output, hosts)
        run(ping, env, "ping")

        times = {"update_ivr": [], "ping": []}
        cpu = {"update_ivr": [], "ping": []}
        for round_no in range(1, args.rounds + 1):
            # Alternate the order so a slow moment of the machine does not favour one.
            order = ("update_ivr", "ping") if round_no % 2 else ("ping", "update_ivr")
            for name in order:
                seconds, cpu_seconds, output = run(
                    update if name == "update_ivr" else ping, env, name
                )
                if name == "update_ivr":
                    check_no_op(output, hosts)
                times[name].append(seconds)
                cpu[name].append(cpu_seconds)
            print(
                f"noop: round {round_no}: update_ivr {times['update_ivr'][-1]:.2f} s "
                f"(CPU {cpu['update_ivr'][-1]:.2f} s), ping {times['ping'][-1]:.2f} s "
                f"(CPU {cpu['ping'][-1]:.2f} s)",
                flush=True,
            )
    finally:
        if not args.keep:
            # supervisord stops its programs one by one: 150 take more than the default 30 s.
            subprocess.run(
                [*labctl, "down", "--timeout", "300"], env=env, capture_output=True, check=False
            )

    update_median = statistics.median(times["update_ivr"])
    ping_median = statistics.median(times["ping"])
    update_cpu = statistics.median(cpu["update_ivr"])
    ping_cpu = statistics.median(cpu["ping"])
    print(
        f"noop: {len(hosts)} hosts, {args.rounds} rounds, forks from ansible.cfg, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}: median update_ivr "
        f"{update_median:.2f} s, median ping {ping_median:.2f} s; CPU time update_ivr "
        f"{update_cpu:.2f} s, ping {ping_cpu:.2f} s, cpu_ratio={update_cpu / ping_cpu:.2f}"
    )
    print(f"noop: ratio={update_median / ping_median:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
