# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the run_summary filter: the totals and lines at the end of update_ivr.yml."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.prairiefyre.updater.plugins.filter.run_summary import (
    FilterModule,
    run_summary,
)


def service(name, module, old_id, new_id, *, wait=2.5, down=1.25, dropped=0, away=None):
    return {
        "service": name,
        "module": module,
        "old_id": old_id,
        "new_id": new_id,
        "version_reported": "6.3.2.0",
        "restarted": True,
        "wait_seconds": wait,
        "downtime_seconds": down,
        "calls_dropped": dropped,
        "calls_turned_away": away,
    }


UPDATED = {
    "host": "ivr01",
    "status": "updated",
    "msg": "ivr01: updated ivr_inbound, ivr_upiq to 6.3.2.0",
    "product_version": "6.3.2.0",
    "check_mode": False,
    "services": [
        service("IVR Inbound", "ivr_inbound", 1000, 1001, away=1),
        service("IVR UpIQ", "ivr_upiq", 3000, 3001, wait=10, down=2.5, dropped=1, away=4),
    ],
}
UP_TO_DATE = {"host": "ivr02", "status": "up_to_date", "msg": "ivr02: up to date", "services": []}
WAITING = {
    "host": "ivr03",
    "status": "waiting",
    "msg": "ivr03: IVR Inbound: 4 of 4 ports busy (after 2 polls every 1 s); nothing was stopped.",
    "services": [],
}
FAILED = {"host": "ivr04", "status": "failed", "msg": "ivr04: record unreadable", "services": []}
HELD = {"host": "ivr05", "status": "held", "msg": "ivr05: held back", "services": []}


def test_a_mixed_run():
    summary = run_summary([UPDATED, UP_TO_DATE, WAITING, FAILED, HELD])

    assert {k: summary[k] for k in ("hosts_checked", "updated", "up_to_date")} == {
        "hosts_checked": 5,
        "updated": 1,
        "up_to_date": 1,
    }
    assert (summary["waiting"], summary["failed"], summary["held"]) == (1, 1, 1)
    assert summary["hosts"] == {
        "updated": ["ivr01"],
        "up_to_date": ["ivr02"],
        "waiting": ["ivr03"],
        "failed": ["ivr04"],
        "held": ["ivr05"],
    }
    assert [(r["host"], r["service"], r["old_id"], r["new_id"]) for r in summary["services"]] == [
        ("ivr01", "IVR Inbound", 1000, 1001),
        ("ivr01", "IVR UpIQ", 3000, 3001),
    ]
    assert (summary["calls_dropped"], summary["downtime_seconds"]) == (1, 3.75)
    assert summary["calls_turned_away"] == 5
    assert (summary["product_version"], summary["check_mode"]) == ("6.3.2.0", False)
    assert summary["lines"] == [
        "5 hosts checked: 1 updated, 1 up to date, 1 waiting, 1 failed, 1 held back",
        "ivr01 IVR Inbound: ivr_inbound 1000 -> 1001, reports 6.3.2.0, waited 2.5 s, "
        "down 1.2 s, 0 calls dropped, 1 caller turned away while it was closed",
        "ivr01 IVR UpIQ: ivr_upiq 3000 -> 3001, reports 6.3.2.0, waited 10.0 s, "
        "down 2.5 s, 1 call dropped, 4 callers turned away while it was closed",
        WAITING["msg"],
        "ivr04: record unreadable",
        "ivr05: held back",
        "up to date: ivr02",
    ]


LINE_CASES = [
    pytest.param(
        [UP_TO_DATE, dict(UP_TO_DATE, host="ivr09")],
        [
            "2 hosts checked: 0 updated, 2 up to date, 0 waiting, 0 failed, 0 held back",
            "up to date: ivr02, ivr09",
        ],
        id="nothing-to-do",
    ),
    pytest.param(
        [dict(UPDATED, check_mode=True, services=[])],
        [
            "1 host checked: 1 to update, 0 up to date, 0 waiting, 0 failed, 0 held back "
            "(check mode: no host was changed)"
        ],
        id="check-mode",
    ),
    pytest.param(
        [{"host": "ivr07", "status": "running", "msg": "ivr07: cut off"}],
        [
            "1 host checked: 0 updated, 0 up to date, 0 waiting, 1 failed, 0 held back",
            "ivr07: cut off (status 'running')",
        ],
        id="unknown-status-counts-as-failed",
    ),
    pytest.param(
        [{"host": "ivr08", "status": "failed"}],
        [
            "1 host checked: 0 updated, 0 up to date, 0 waiting, 1 failed, 0 held back",
            "ivr08: no message",
        ],
        id="failed-without-message",
    ),
    pytest.param(
        [],
        ["0 hosts checked: 0 updated, 0 up to date, 0 waiting, 0 failed, 0 held back"],
        id="no-hosts",
    ),
    pytest.param(
        [
            dict(
                UPDATED,
                check_mode=True,
                services=[
                    dict(
                        service("IVR Inbound", "ivr_inbound", 1000, 1001, wait=0, down=0),
                        version_reported="6.3.1.0",
                    ),
                    dict(
                        service("IVR UpIQ", "ivr_upiq", 3000, 3001, wait=0, down=0),
                        restarted=False,
                    ),
                ],
            ),
            UP_TO_DATE,
        ],
        [
            "2 hosts checked: 1 to update, 1 up to date, 0 waiting, 0 failed, 0 held back "
            "(check mode: no host was changed)",
            # No wait, downtime or drop figures: a check-mode run has none to give.
            "ivr01 IVR Inbound: ivr_inbound 1000 -> 1001, would stop and start it; it reports "
            "6.3.1.0 now",
            "ivr01 IVR UpIQ: ivr_upiq 3000 -> 3001, would not restart it; it reports 6.3.2.0 now",
            "up to date: ivr02",
        ],
        id="check-mode-services",
    ),
]


@pytest.mark.parametrize(("reports", "lines"), LINE_CASES)
def test_lines(reports, lines):
    assert run_summary(reports)["lines"] == lines


def test_missing_figures_count_as_zero():
    row = {"service": "IVR Outbound", "module": "ivr_outbound", "old_id": 1, "new_id": 2}
    report = {"host": "ivr01", "status": "updated", "services": [dict(row, wait_seconds=None)]}

    summary = run_summary([report])

    assert summary["services"][0] == dict(
        row,
        host="ivr01",
        version_reported="",
        restarted=True,
        wait_seconds=0.0,
        downtime_seconds=0.0,
        calls_dropped=0,
        # Not a zero: an unreported count is unknown.
        calls_turned_away=None,
    )
    assert (summary["calls_dropped"], summary["downtime_seconds"]) == (0, 0)
    assert summary["calls_turned_away"] is None


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("reports", "message"),
    [
        ({"host": "ivr01"}, "run_summary: expected a list of host reports, got dict"),
        (
            [{"status": "updated"}],
            "run_summary: a host report needs a host, got {'status': 'updated'}",
        ),
        (["ivr01"], "run_summary: a host report needs a host, got 'ivr01'"),
    ],
)
def test_run_summary_refuses(reports, message):
    with pytest.raises(AnsibleFilterError) as caught:
        run_summary(reports)

    assert caught.value.message == message


def test_the_filter_is_registered_under_its_name():
    assert FilterModule().filters() == {"run_summary": run_summary}


@pytest.mark.parametrize(
    ("counts", "said", "total"),
    [
        # A service that does not count the callers it turns away says nothing about them.
        ([None, None], ["0 calls dropped", "0 calls dropped"], None),
        (
            [None, 0],
            ["0 calls dropped", "0 calls dropped, 0 callers turned away while it was closed"],
            0,
        ),
        (
            [2, "3"],
            [
                "0 calls dropped, 2 callers turned away while it was closed",
                "0 calls dropped, 3 callers turned away while it was closed",
            ],
            5,
        ),
        # A count that makes no sense (a counter reset by a restart) is not shown as one.
        ([-2, True], ["0 calls dropped", "0 calls dropped"], None),
    ],
    ids=["unreported", "partly-reported", "reported", "nonsense"],
)
def test_callers_turned_away_are_shown_where_a_service_counts_them(counts, said, total):
    report = {
        **UPDATED,
        "services": [
            service("IVR Inbound", "ivr_inbound", 1000, 1001, away=counts[0]),
            service("IVR UpIQ", "ivr_upiq", 3000, 3001, away=counts[1]),
        ],
    }

    summary = run_summary([report])

    # What follows the downtime ("down 1.2 s, ") on each service's line.
    assert [line.split(" s, ")[-1] for line in summary["lines"][1:3]] == said
    assert summary["calls_turned_away"] == total
