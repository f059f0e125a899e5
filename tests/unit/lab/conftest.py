"""Shared pieces of the lab tests: imports of lab/, a fake clock, free ports, test bundles."""

import hashlib
import json
import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "lab"))


class FakeClock:
    """Simulated seconds that only move when a test moves them."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def new_clock():
    return FakeClock


def ports_free(ports) -> bool:
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False

    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _free_base_port(hosts: int) -> int:
    """A base port whose whole lab range (enterprise and every host's services) is free."""
    for _attempt in range(50):
        base = _free_port() // 100 * 100
        if 1024 <= base <= 65000 - 10 * (hosts + 1):
            needed = [base] + [base + 10 * i + j for i in range(1, hosts + 1) for j in range(3)]
            if ports_free(needed):
                return base

    pytest.fail("no free range of lab ports on 127.0.0.1")


MODULES = {
    "ivr_inbound": ("IVR/Inbound", "IVR Inbound", 1000),
    "ivr_outbound": ("IVR/Outbound", "IVR Outbound", 2000),
    "ivr_upiq": ("IVR/UpIQ", "IVR UpIQ", 3000),
}


def _make_bundle(root: Path, version: str = "6.3.1.0", patch_id: str = "test-base") -> Path:
    """A release bundle in the contract's format with all three IVR modules."""
    modules = {}
    for name, (target, service, manifest_id) in MODULES.items():
        contents = {
            "version.txt": f"{version}\n".encode(),
            f"{service.split()[1]}.dll": f"binary of {name} {version}".encode(),
            "Prompts/welcome.txt": b"Welcome.\r\n",
        }
        files = {}
        for path, data in contents.items():
            dest = root / "files" / name / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            files[path] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

        modules[name] = {
            "manifest_id": manifest_id,
            "version": version,
            "target": target,
            "services": [service],
            "files": files,
        }

    patch = {"format": 1, "patch_id": patch_id, "product_version": version, "modules": modules}
    (root / "patch.json").write_text(json.dumps(patch, indent=2), encoding="utf-8")
    return root


@pytest.fixture
def free_port():
    return _free_port


@pytest.fixture
def free_base_port():
    return _free_base_port


@pytest.fixture
def make_bundle():
    return _make_bundle
