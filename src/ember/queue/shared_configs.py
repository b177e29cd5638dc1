"""Event-invoke-configs in a metadata namespace (cluster mode), so they propagate.

Embedded mode keeps configs next to the events (``queue.sqlite3``); a cluster
keeps them in the ``configs`` metadata namespace, where every write reaches
every node through the change feed like any other metadata. A config's key is
``function:qualifier`` (``$LATEST`` spelled out): neither part can hold a
colon, and PostgreSQL text cannot hold the NUL a binary separator would need.
"""

from __future__ import annotations

import asyncio
import logging

from ember.storage.base import MetadataStore

log = logging.getLogger("ember.queue")


def config_key(function: str, qualifier: str) -> str:
    return f"{function}:{qualifier}"


class MetadataConfigStore:
    """See ``ember.queue.base.ConfigStore``, over one ``MetadataStore`` namespace."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        self._discarding: set[asyncio.Task[None]] = set()  # strong refs until done

    async def load_configs(self) -> dict[tuple[str, str], str]:
        found: dict[tuple[str, str], str] = {}
        for key, document in (await self._store.load_all()).items():
            function, _, qualifier = key.partition(":")
            found[(function, qualifier)] = document
        return found

    async def put_config(self, function: str, qualifier: str, document: str) -> None:
        await self._store.put(config_key(function, qualifier), document)

    async def delete_config(self, function: str, qualifier: str) -> None:
        await self._store.delete(config_key(function, qualifier))

    def discard_configs(self, function: str) -> None:
        task = asyncio.get_running_loop().create_task(self._discard(function))
        self._discarding.add(task)
        task.add_done_callback(self._discarding.discard)

    async def _discard(self, function: str) -> None:
        try:
            for function_name, qualifier in await self.load_configs():
                if function_name == function:
                    await self.delete_config(function_name, qualifier)
        except Exception:  # the next load drops them: configs of a missing function
            log.warning("could not remove the configs of deleted %s", function, exc_info=True)
