# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: run_summary
short_description: Sum up the host reports of an update run
version_added: 0.1.0
author: prairiefyre.updater maintainers (@prairiefyre)
description:
  - Takes one report per host, as the C(prairiefyre.updater.remote_ivr_update) role builds it,
    and returns the run's totals, the hosts by outcome, one row per service that was updated
    and a few readable lines for the operator.
  - Outcomes are C(updated), C(up_to_date), C(waiting) (permission was never granted, nothing
    stopped), C(failed) and C(held) (not started because too many updates had failed). A
    report with any other status counts as failed.
options:
  _input:
    description:
      - The reports, one per host, in the order to show them.
      - Each has C(host), C(status), C(msg) and C(services), a list with C(service), C(module),
        C(old_id), C(new_id), C(version_reported), C(wait_seconds), C(downtime_seconds) and
        C(calls_dropped); C(calls_turned_away), C(product_version) and C(check_mode) are
        optional.
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Show the run's summary
  ansible.builtin.debug:
    msg: "{{ (reports | prairiefyre.updater.run_summary).lines }}"
  vars:
    reports:
      - {host: ivr01, status: up_to_date, msg: "ivr01: up to date, nothing stopped", services: []}
"""

RETURN = r"""
_value:
  description: The run's summary.
  type: dict
  contains:
    hosts_checked:
      description: How many reports were given.
      type: int
    updated:
      description: Hosts updated in this run; likewise C(up_to_date), C(waiting), C(failed) and
        C(held).
      type: int
    hosts:
      description: The host names by outcome, each a list.
      type: dict
    services:
      description: One row per service of an updated module, with its C(host).
      type: list
      elements: dict
    calls_dropped:
      description: Calls the run's stops cut off, over every service.
      type: int
    calls_turned_away:
      description:
        - Callers the services turned away while they were closed for the update, from the
          grant (or the start of a drain) to the stop, over the services that report it.
        - Null when no service reports it.
      type: int
    downtime_seconds:
      description: The services' downtime added up.
      type: float
    product_version:
      description: The product version the run installs; empty when no report names one.
      type: str
    check_mode:
      description: Whether the run only checked.
      type: bool
    lines:
      description: The summary as readable lines.
      type: list
      elements: str
"""

from ansible.errors import AnsibleFilterError

OUTCOMES = ("updated", "up_to_date", "waiting", "failed", "held")
_WORDS = {
    "updated": "updated",
    "up_to_date": "up to date",
    "waiting": "waiting",
    "failed": "failed",
    "held": "held back",
}


def _number(value, kind=float):
    try:
        return kind(value or 0)
    except (TypeError, ValueError):
        return kind(0)


def _service_row(host, entry):
    return {
        "host": host,
        "service": entry.get("service", ""),
        "module": entry.get("module", ""),
        "old_id": entry.get("old_id"),
        "new_id": entry.get("new_id"),
        "version_reported": entry.get("version_reported", ""),
        "restarted": bool(entry.get("restarted", True)),
        "wait_seconds": _number(entry.get("wait_seconds")),
        "downtime_seconds": _number(entry.get("downtime_seconds")),
        "calls_dropped": _number(entry.get("calls_dropped"), int),
        # None where the service does not count the callers it turns away.
        "calls_turned_away": _count(entry.get("calls_turned_away")),
    }


def _count(value):
    """A non-negative whole count, or None when there is none to give."""
    if value is None or isinstance(value, bool):
        return None
    try:
        count = int(value)
    except (TypeError, ValueError):
        return None
    return count if count >= 0 else None


# What the header calls each outcome after a check-mode run, which changed nothing.
_CHECK_WORDS = {**_WORDS, "updated": "to update"}


def _service_line(row, check_mode=False):
    step = f"{row['host']} {row['service']}: {row['module']} {row['old_id']} -> {row['new_id']}"
    if check_mode:
        # Nothing waited, stopped or started: the figures of a real run would be made up.
        action = "would stop and start it" if row["restarted"] else "would not restart it"
        return f"{step}, {action}; it reports {row['version_reported'] or '?'} now"

    line = (
        f"{step}, reports {row['version_reported'] or '?'}, waited {row['wait_seconds']:.1f} s, "
        f"down {row['downtime_seconds']:.1f} s, {_many(row['calls_dropped'], 'call')} dropped"
    )
    if row["calls_turned_away"] is not None:
        line += f", {_many(row['calls_turned_away'], 'caller')} turned away while it was closed"
    return line


def _many(count, noun):
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def run_summary(reports):
    """Return the totals, outcomes, service rows and readable lines of ``reports``."""
    if not isinstance(reports, (list, tuple)):
        raise AnsibleFilterError(
            f"run_summary: expected a list of host reports, got {type(reports).__name__}"
        )

    hosts = {outcome: [] for outcome in OUTCOMES}
    services = []
    notes = []
    versions = []
    check_mode = False
    for report in reports:
        if not isinstance(report, dict) or not report.get("host"):
            raise AnsibleFilterError(f"run_summary: a host report needs a host, got {report!r}")

        host = report["host"]
        status = report.get("status")
        outcome = status if status in OUTCOMES else "failed"
        hosts[outcome].append(host)
        check_mode = check_mode or bool(report.get("check_mode"))
        if report.get("product_version"):
            versions.append(report["product_version"])

        services += [_service_row(host, entry) for entry in report.get("services") or []]
        if outcome in ("failed", "waiting", "held"):
            msg = (report.get("msg") or "").strip() or f"{host}: no message"
            notes.append(msg if status in OUTCOMES else f"{msg} (status {status!r})")

    totals = {outcome: len(names) for outcome, names in hosts.items()}
    words = _CHECK_WORDS if check_mode else _WORDS
    noun = "host" if len(reports) == 1 else "hosts"
    header = f"{len(reports)} {noun} checked: " + ", ".join(
        f"{totals[outcome]} {words[outcome]}" for outcome in OUTCOMES
    )
    if check_mode:
        header += " (check mode: no host was changed)"

    lines = [header]
    lines += [_service_line(row, check_mode) for row in services]
    lines += notes
    if hosts["up_to_date"]:
        lines.append("up to date: " + ", ".join(hosts["up_to_date"]))

    return {
        "hosts_checked": len(reports),
        **totals,
        "hosts": hosts,
        "services": services,
        "calls_dropped": sum(row["calls_dropped"] for row in services),
        "calls_turned_away": _total(row["calls_turned_away"] for row in services),
        "downtime_seconds": round(sum(row["downtime_seconds"] for row in services), 2),
        "product_version": versions[-1] if versions else "",
        "check_mode": check_mode,
        "lines": lines,
    }


def _total(counts):
    """The sum of the counts that are known, or None when none is."""
    known = [count for count in counts if count is not None]
    return sum(known) if known else None


class FilterModule:
    def filters(self):
        return {"run_summary": run_summary}
