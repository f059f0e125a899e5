# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared set-up of the unit tests.

The collection is imported as ``ansible_collections.prairiefyre.updater`` through the link that
``make link`` creates in .build/collections; without that link a private one is made in a
temporary directory, so the tests also run from a bare checkout.

Fixtures for every test: ``run_module`` runs any module's ``main()`` in-process (see
``ModuleRun``); ``http_dir`` serves a directory over HTTP on a loopback port; ``no_proxy``
clears the proxy settings of the environment. Plain helpers shared by several test modules are
in helpers.py next to this file.
"""

import atexit
import functools
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COLLECTION_LINK = (
    REPO / ".build" / "collections" / "ansible_collections" / "prairiefyre" / "updater"
)


def _collections_path():
    if COLLECTION_LINK.resolve() == REPO:
        return str(REPO / ".build" / "collections")

    root = tempfile.mkdtemp(prefix="prairiefyre-collections-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    link = Path(root, "ansible_collections", "prairiefyre", "updater")
    link.parent.mkdir(parents=True)
    link.symlink_to(REPO, target_is_directory=True)
    return root


COLLECTIONS_PATH = _collections_path()
if COLLECTIONS_PATH not in sys.path:
    sys.path.insert(0, COLLECTIONS_PATH)
os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", COLLECTIONS_PATH)

from ansible.module_utils import basic  # noqa: E402
from ansible.module_utils.testing import patch_module_args  # noqa: E402


class _ModuleExit(Exception):
    def __init__(self, result):
        super().__init__(result)
        self.result = result


class ModuleRun:
    """Run a module's ``main()`` in-process and return what it reported.

    Usage from any test module (the fixture is named ``run_module``)::

        from ansible_collections.prairiefyre.updater.plugins.modules import my_module

        def test_something(run_module):
            result = run_module(my_module, {"path": "/x"}, check_mode=True, diff=True)
            assert result["failed"] is False
            assert result["msg"] == "..."

    ``module`` is the imported module (its ``main`` is called) or ``main`` itself. ``args`` are
    the task's options. ``check_mode`` and ``diff`` set what ``--check`` and ``--diff`` set.
    The return value is the dict the module passed to ``exit_json`` or ``fail_json``, with
    ``failed`` always present (False after exit_json, True after fail_json). A main() that
    returns without calling either, or raises, fails the test.
    """

    def __init__(self, monkeypatch):
        self._monkeypatch = monkeypatch

    def __call__(self, module, args, check_mode=False, diff=False):
        main = getattr(module, "main", module)
        args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)

        def exit_json(_self, **result):
            result.setdefault("changed", False)
            result["failed"] = False
            raise _ModuleExit(result)

        def fail_json(_self, msg, **result):
            result["msg"] = msg
            result["failed"] = True
            raise _ModuleExit(result)

        self._monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
        self._monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
        with patch_module_args(args):
            try:
                main()
            except _ModuleExit as done:
                # A JSON round trip is what the controller would see: tuples become lists.
                return json.loads(json.dumps(done.result, default=str))

        pytest.fail(f"{main.__module__}.main() returned without exit_json or fail_json")


@pytest.fixture
def run_module(monkeypatch):
    """A ModuleRun: call ``run_module(module, args, check_mode=False, diff=False)``."""
    return ModuleRun(monkeypatch)


@pytest.fixture
def no_proxy(monkeypatch):
    """Remove the proxy variables from the environment for one test."""
    # A proxy from the environment would carry the loopback requests off this machine.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def http_dir(tmp_path):
    """Serve a fresh directory over HTTP on 127.0.0.1 (a free port); yield (directory, base URL).

    Files written into the directory during the test are served at ``<base URL>/<name>``; a
    missing file answers 404. The server stops when the test ends.
    """
    root = tmp_path / "http"
    root.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
