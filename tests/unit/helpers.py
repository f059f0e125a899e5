# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers that several unit test modules share: file trees on disk and a scripted IVR service.

Import them through the collection's name, as the tests import the plugins::

    from ansible_collections.prairiefyre.updater.tests.unit.helpers import write_tree

The test modules are not in a package (pytest puts each one's own folder on sys.path), so the
collection path that conftest.py sets up is the one name under which this file is always found.
"""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def write_tree(top, contents):
    """Write {relative path with "/": bytes} below top, making folders as needed."""
    for path, data in contents.items():
        full = os.path.join(top, *path.split("/"))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as handle:
            handle.write(data)


def read_tree(top):
    """Every file below top as {relative path with "/": bytes}: the inverse of write_tree."""
    found = {}
    for dirpath, _dirnames, names in os.walk(top):
        for name in names:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as handle:
                found[os.path.relpath(full, top).replace(os.sep, "/")] = handle.read()
    return found


class FakeService:
    """A scripted IVR service on 127.0.0.1: each request takes the next reply queued for its route.

    A reply is (code, body) or (code, body, delay); a dict body is sent as JSON, a str as it
    is. The last reply of a route repeats. Every request is recorded as (method, path,
    Authorization header, JSON body or None); with ``record_auth=False`` the header is left
    out, for tests that never send a token and compare (method, path, body).

    Use it as a context manager, or call ``close()``, to stop the server.
    """

    def __init__(self, record_auth=True):
        self.record_auth = record_auth
        self.replies = {}
        self.requests = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake.serve(self, "GET")

            def do_POST(self):
                fake.serve(self, "POST")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        # A short poll interval keeps shutdown() in each teardown quick.
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def reply(self, method, path, *replies):
        self.replies[(method, path)] = list(replies)

    def serve(self, handler, method):
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        if self.record_auth:
            auth = handler.headers.get("Authorization")
            self.requests.append((method, handler.path, auth, body))
        else:
            self.requests.append((method, handler.path, body))

        queue = self.replies.get((method, handler.path)) or [(404, {"error": "no such path"})]
        code, payload, *delay = queue.pop(0) if len(queue) > 1 else queue[0]
        if delay:
            time.sleep(delay[0])
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        handler.send_response(code)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
