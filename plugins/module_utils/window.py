# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stop a module's services, swap its files in and start the services again, in one call.

The stop-to-start window holds the renames of the swap and nothing else: every check runs
before the first stop (``swap.prepare``) and the bookkeeping after the last start
(``journal.finish``, which ``journal.repair`` redoes if the process dies first). One module run
for the three steps also keeps the controller's per-task overhead out of the window.
"""

import contextlib
import os
import time

from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import UpdaterError
from ansible_collections.prairiefyre.updater.plugins.module_utils.journal import (
    backup_of,
    finish,
    flush_filesystem,
    rename_trees,
    repair,
    write_journal,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.service import (
    NOT_RUNNING,
    ServiceController,
    ServiceError,
    Supervisor,
    Systemd,
    find_supervisorctl,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.supervisor_rpc import (
    SupervisorRPC,
    proxy_for,
    server_of,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.swap import (
    DEFAULT_KEEP_BACKUPS,
    prepare,
    swapped_msg,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.tree import SwapError, dir_id


def controllers(units, manager, run_command, get_bin_path, **options):
    """A ServiceController per unit; options: supervisor_config, supervisorctl, timeout.

    Under supervisord the units are driven over its XML-RPC socket when the configuration
    names one (no interpreter start between the stop and the start), through supervisorctl
    when it does not or when the supervisorctl option asks for it.
    """
    timeout = options.get("timeout") or 30
    config = options.get("supervisor_config")
    server = server_of(config) if manager == "supervisord" else None
    if server and not options.get("supervisorctl"):
        url, username, password = server
        proxy = proxy_for(url, username, password, timeout=timeout)
        managers = [SupervisorRPC(unit, config, url, proxy) for unit in units]
    elif manager == "supervisord":
        ctl = find_supervisorctl(options.get("supervisorctl"))
        managers = [Supervisor(unit, config, ctl, run_command) for unit in units]
    else:
        systemctl = get_bin_path("systemctl")
        if not systemctl:
            raise ServiceError(
                f"systemctl is not on this host's PATH, so {', '.join(units)} cannot be "
                "controlled with manager systemd",
                service=units[0] if units else None,
            )
        managers = [Systemd(unit, systemctl, run_command) for unit in units]
    return [ServiceController(each, timeout=timeout) for each in managers]


def _status(controller, raw):
    return controller.manager.states.get(raw, "unknown")


def _names(services):
    return [each.manager.name for each in services]


def check_running(layout, services):
    """Refuse to record an ID while a service of the module does not run."""
    for each in services:
        raw = each.manager.state()
        if _status(each, raw) != "running":
            raise SwapError(
                f"cannot record manifest ID {layout.manifest_id} for module {layout.module}: "
                f"{each.manager.name} under {each.manager.manager} is {raw}, not running; the "
                "next run starts it and records the ID",
                module=layout.module,
                service=each.manager.name,
                state=raw,
            )


def _refuse_unpermitted(layout, services, raw, expect_stopped):
    """A unit listed as down gave no permission, so it must not be running now."""
    by_name = {each.manager.name: each for each in services}
    for unit in expect_stopped:
        each = by_name.get(unit)
        if each is None:
            raise SwapError(
                f"expect_stopped names {unit}, which is not one of the services "
                f"{', '.join(by_name)} of module {layout.module}",
                module=layout.module,
                service=unit,
            )
        if _status(each, raw[unit]) not in NOT_RUNNING:
            raise SwapError(
                f"{unit} under {each.manager.manager} is {raw[unit]} but did not answer its "
                "status endpoint, so it gave no permission to stop; nothing was stopped",
                module=layout.module,
                service=unit,
                state=raw[unit],
            )


def _parent_pid(pid):
    """The parent of process pid from /proc, or None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            # The command name, in parentheses, may hold spaces: count fields after it.
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _runs_in(answering, unit_pid):
    """Whether process answering is unit_pid or one of its descendants (a wrapper's child)."""
    pid = answering
    for _depth in range(32):
        if pid == unit_pid:
            return True
        pid = _parent_pid(pid)
        if pid is None or pid <= 1:
            return False
    return False


def _refuse_strangers(layout, to_stop, expect_pids):
    """A unit is stopped only when the endpoint that gave its permission runs inside it.

    The permission comes from the status endpoint and the stop goes to the unit; when the two
    name different services (a status URL copied from another host, two units swapped), the
    unit's own calls were never asked about, and stopping it would cut them off.
    """
    for each in to_stop:
        unit = each.manager.name
        answering = expect_pids.get(unit)
        if answering is None:
            continue

        unit_pid = each.manager.pid()
        if unit_pid is not None and _runs_in(answering, unit_pid):
            continue
        runs = f"runs as process {unit_pid}" if unit_pid else "has no process"
        raise SwapError(
            f"{unit} under {each.manager.manager} {runs}, but the status endpoint that gave its "
            f"permission answers from process {answering}, which is not that process or one it "
            "started: the service's status URL and its unit name different services, and this "
            "unit's calls were never asked about; nothing was stopped",
            module=layout.module,
            service=unit,
        )


@contextlib.contextmanager
def _before_any_stop():
    """A refusal raised here says in its result that nothing was stopped or started, so that
    the caller starts nothing it did not stop (a unit name that does not exist would fail
    that start and hide the cause)."""
    try:
        yield
    except UpdaterError as error:
        error.context.update(stopped=[], started=[], swapped=False)
        raise


class _Window:
    """One stop, swap, start; remembers how far it got for the failure report."""

    def __init__(self, layout, journal, clock):
        self.layout = layout
        self.journal = journal
        self.clock = clock
        self.stopped = []
        self.started = []
        self.swapped = False
        self.finished = journal is None
        self.swap_seconds = 0.0

    def run(self, to_stop, to_start, raw):
        for each in to_stop:
            name = each.manager.name
            if isinstance(each.manager, SupervisorRPC):
                # supervisord answers a waited stopProcess once the program is down, so the
                # poll that confirms a stop would only lengthen the window.
                each.manager.stop()
                raw[name] = "STOPPED"
            else:
                raw[name] = each.ensure("stopped", current=raw[name])["manager_status"]
            self.stopped.append(name)

        if self.journal is not None:
            self._swap()

        for each in to_start:
            each.ensure("started", current=raw[each.manager.name])
            self.started.append(each.manager.name)

    def _swap(self):
        began = self.clock()
        try:
            rename_trees(self.journal)
        except OSError as exc:
            self._recover(exc)
        self.swapped = True
        self.swap_seconds = round(self.clock() - began, 4)

    def _recover(self, exc):
        """A rename failed: finish or undo it now, so the caller never meets a half swap."""
        cause = f"cannot swap module {self.layout.module}: {exc.filename}: {exc.strerror or exc}"
        try:
            repair(self.layout)
        except UpdaterError as error:
            cause += f"; the repair failed too: {error}"
        self.finished = True
        self.swapped = dir_id(self.layout.target) == self.journal["src_tree"]
        raise SwapError(cause, module=self.layout.module, path=exc.filename)

    def open(self):
        """Write the journal and flush the filesystem while the services still run; the
        window then only renames."""
        if self.journal is not None:
            try:
                write_journal(self.layout, self.journal)
                flush_filesystem(self.layout.root)
            except OSError as exc:
                raise SwapError(
                    f"cannot swap module {self.layout.module}: {exc.filename}: "
                    f"{exc.strerror or exc}; nothing was stopped",
                    module=self.layout.module,
                    path=exc.filename,
                ) from None

    def wrap_up(self):
        """The swap's bookkeeping, once the services run again (or failed to)."""
        if self.finished:
            return
        if not self.swapped:
            # Nothing moved: the journal of a step that never began only needs to go.
            os.unlink(self.layout.journal)
            self.finished = True
            return
        try:
            finish(self.layout, self.journal)
        except OSError as exc:
            raise SwapError(
                f"module {self.layout.module}: the swap is done but its bookkeeping failed: "
                f"{exc.filename}: {exc.strerror or exc}; the next run finishes it",
                module=self.layout.module,
                path=exc.filename,
                stopped=self.stopped,
                started=self.started,
                swapped=True,
                backup=self.journal["aside"],
            ) from None
        self.finished = True


def swap_services(
    layout,
    files,
    services,
    *,
    keep_backups=DEFAULT_KEEP_BACKUPS,
    expect_stopped=(),
    expect_pids=None,
    restart=False,
    check_mode=False,
    want_diff=False,
    clock=time.monotonic,
):
    """Bring the module's files to the manifest and its services up on them.

    When the target differs, every running service stops, the staged tree is swapped in and
    every service starts. When it already matches, only services that do not run start, and
    running ones restart only with ``restart``. ``expect_pids`` maps a unit to the process that
    answered its status endpoint; a unit to stop that does not run it is refused.
    """
    with _before_any_stop():
        result, needed, journal = prepare(layout, files, keep_backups, check_mode, want_diff)
        raw = {each.manager.name: each.manager.state() for each in services}
        _refuse_unpermitted(layout, services, raw, expect_stopped)

    bounce = needed or restart
    to_stop = [s for s in services if bounce and _status(s, raw[s.manager.name]) not in NOT_RUNNING]
    to_start = [s for s in services if bounce or _status(s, raw[s.manager.name]) != "running"]
    result.update(
        stopped=_names(to_stop),
        started=_names(to_start),
        swapped=False,
        backup=None if needed else backup_of(layout),
        downtime_seconds=0.0,
        swap_seconds=0.0,
    )
    if not needed and not to_stop and not to_start:
        result["msg"] += " and every service runs"
        return result

    result["changed"] = True
    if check_mode:
        result["msg"] = _would_msg(layout, result, needed)
        return result

    with _before_any_stop():
        _refuse_strangers(layout, to_stop, expect_pids or {})
    window = _Window(layout, journal, clock)
    window.open()
    began = clock()
    try:
        window.run(to_stop, to_start, raw)
    except UpdaterError as error:
        window.wrap_up()
        raise _failure(layout, window, result["backup"], error) from None
    window.wrap_up()

    result.update(
        stopped=window.stopped,
        started=window.started,
        swapped=window.swapped,
        downtime_seconds=round(clock() - began, 3) if window.stopped else 0.0,
        swap_seconds=window.swap_seconds,
    )
    if window.swapped:
        result["backup"] = journal["aside"]
        result["msg"] = swapped_msg(layout, result, journal)
    else:
        result["msg"] = f"module {layout.module}: {layout.target} already has the manifest's files"
    result["msg"] += _services_said(window.stopped, window.started)
    return result


def _services_said(stopped, started):
    said = []
    if stopped:
        said.append(f"stopped {', '.join(stopped)}")
    if started:
        said.append(f"started {', '.join(started)}")
    return f"; {' and '.join(said)}" if said else ""


def _would_msg(layout, result, needed):
    if needed:
        msg = (
            f"module {layout.module}: would replace {len(result['changed_files'])} and remove "
            f"{len(result['removed_files'])} files in {layout.target}"
        )
    else:
        msg = f"module {layout.module}: {layout.target} already has the manifest's files"
    if result["stopped"]:
        msg += f"; would stop {', '.join(result['stopped'])}"
    if result["started"]:
        msg += f"; would start {', '.join(result['started'])}"
    return msg


def _failure(layout, window, backup, error):
    """The error of a failed window, saying how far it got; ``backup`` is the one known before."""
    if window.swapped:
        backup = window.journal["aside"]
    done = []
    if window.stopped:
        done.append(f"stopped {', '.join(window.stopped)}")
    if window.swapped:
        done.append(f"swapped in manifest ID {layout.manifest_id} (the old tree is in {backup})")
    if window.started:
        done.append(f"started {', '.join(window.started)}")
    sentence = f"module {layout.module}: {error}"
    if done:
        sentence += f" (after it {', '.join(done)})"
    return SwapError(
        sentence,
        module=layout.module,
        stopped=window.stopped,
        started=window.started,
        swapped=window.swapped,
        backup=backup,
    )
