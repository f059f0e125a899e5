# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host's record of the leases and drains an update holds, one file per service.

A grant closes a service to new calls until it is released or expires. A run that is cut off
(a cancelled AWX job, a lost controller) cannot release what it holds, so the service would
stay closed for the rest of the lease. ivr_port_status writes each lease and each drain it
starts into <install_root>/.updater/leases/<service>.json and removes the file when it gives
the lease back; the next run finds the files left behind (manifest_compare lists them) and
releases them before it asks for anything.
"""

import json
import os
import re
import time

from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import UpdaterError
from ansible_collections.prairiefyre.updater.plugins.module_utils.fileio import (
    list_dir,
    read_json_object,
    write_json_atomic,
)

KINDS = ("lease", "drain")


def record_name(service):
    """The file name of a service's record: "IVR Inbound" -> "ivr_inbound.json"."""
    slug = re.sub(r"[^a-z0-9]+", "_", service.lower()).strip("_")
    return f"{slug or 'service'}.json"


def record_path(directory, service):
    return os.path.join(directory, record_name(service))


def write_record(directory, service, kind, url, *, lease_id=None, seconds=None, now=None):
    """Note that this update holds a lease (or started a drain) on the service."""
    now = time.time() if now is None else now
    record = {
        "service": service,
        "kind": kind,
        "lease_id": lease_id,
        "url": url,
        "recorded_at": round(now, 3),
        "ends_at": None if seconds is None else round(now + seconds, 3),
    }
    os.makedirs(directory, mode=0o755, exist_ok=True)
    write_json_atomic(record_path(directory, service), record)
    return record


def read_record(directory, service):
    """The service's record, or None when there is none."""
    return _load(record_path(directory, service))


def remove_record(directory, service):
    """Forget the service's record; True when there was one."""
    try:
        os.unlink(record_path(directory, service))
    except FileNotFoundError:
        return False
    return True


def list_records(directory):
    """Every record in the directory, sorted by service; an absent directory holds none."""
    try:
        names = sorted(list_dir(directory, "the lease record directory"))
    except FileNotFoundError:
        return []

    records = []
    for name in names:
        if name.endswith(".json"):
            record = _load(os.path.join(directory, name))
            if record is not None:
                records.append(record)
    return records


def _load(path):
    def unreadable(error):
        raise UpdaterError(
            f"the lease record {path} cannot be read ({error}); remove it once the service it "
            "names takes calls again",
            file=path,
        ) from error

    data = read_json_object(path, unreadable)
    if data is None:
        return None

    valid = (
        isinstance(data.get("service"), str)
        and data.get("kind") in KINDS
        and (data.get("lease_id") is None or isinstance(data.get("lease_id"), str))
        and (data["kind"] == "drain" or data.get("lease_id"))
    )
    if not valid:
        raise UpdaterError(
            f"the lease record {path} is not one this collection writes (it needs service, kind "
            f"lease or drain, and a lease_id for a lease): {json.dumps(data)[:200]}; remove it "
            "once the service it names takes calls again",
            file=path,
        )
    return data
