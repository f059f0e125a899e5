# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark only: the local connection, counting what the controller hands to each host.

bench/downtime.py selects it with ansible_connection=counting_local. Every file put on a host
(the copy module's transfers) and every piece of standard input (module code and arguments,
with pipelining) is appended to $BENCH_BYTES_LOG as `<kind> <host> <bytes>`.
"""

import os

from ansible.plugins.connection.local import Connection as LocalConnection

DOCUMENTATION = """
name: counting_local
short_description: Local connection that counts the bytes it hands to the host (benchmark)
description:
  - The C(local) connection, plus a log of the size of every file put on the host and of every
    standard input sent to it, in E(BENCH_BYTES_LOG).
author: prairiefyre.updater maintainers (@prairiefyre)
extends_documentation_fragment:
  - connection_pipelining
"""


class Connection(LocalConnection):
    transport = "counting_local"

    def _count(self, kind, size):
        log = os.environ.get("BENCH_BYTES_LOG")
        if log:
            host = self._play_context.remote_addr or "?"
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(f"{kind} {host} {size}\n")

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        self._count("file", os.path.getsize(in_path))

    def exec_command(self, cmd, in_data=None, sudoable=True):
        if in_data:
            self._count("stdin", len(in_data))
        return super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
