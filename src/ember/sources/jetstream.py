"""NATS JetStream, ember's extension, over nats-py: a durable pull consumer per mapping.

The mapping's stream (``arn:ember:nats:...:stream:NAME:STREAM``) is consumed
through a durable consumer named ``ember-<UUID>`` filtered on the mapping's
subject (its ``Queues`` entry), explicit acks, shared by every consumer of
every node (pull consumers compete). A message is acknowledged only after the
function succeeded and ``nak``-ed otherwise; one a dead node had fetched comes
back after the consumer's ack wait (the function's timeout plus a margin).
The event is ember's own, Lambda's Kafka event in spirit::

    {"eventSource": "ember:nats", "eventSourceArn": ARN,
     "records": [{"stream", "subject", "sequence", "deliveries", "redelivered",
                  "timestamp", "headers", "data" (base64)}]}
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Sequence
from typing import Any

import nats
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from ember.errors import BrokerUnavailable
from ember.sources.brokers import Broker

CONNECT_TIMEOUT = 5.0
ACK_MARGIN = 10.0  # seconds past the function's timeout before a fetched message returns
IDLE_FETCH = 5.0  # a fetch waiting for a first message expires this often


def record(message: Msg) -> dict[str, Any]:
    metadata = message.metadata
    return {
        "stream": metadata.stream,
        "subject": message.subject,
        "sequence": metadata.sequence.stream,
        "deliveries": metadata.num_delivered,
        "redelivered": metadata.num_delivered > 1,
        "timestamp": metadata.timestamp.isoformat(),
        "headers": dict(message.headers or {}),
        "data": base64.b64encode(message.data).decode(),
    }


class JetStreamConsumer:
    """See ``ember.sources.base.Consumer``: one pull subscription of the durable consumer."""

    def __init__(self, client: Client, subscription: JetStreamContext.PullSubscription, arn: str):
        self._client = client
        self._subscription = subscription
        self._arn = arn

    async def batch(self, size: int, window: float) -> Sequence[object] | None:
        first: list[Msg] = []
        while not first:
            if self._client.is_closed:
                return None
            first = await self._fetch(1, IDLE_FETCH)
        rest = await self._fetch(size - 1, max(window, 0.05)) if size > 1 else []
        return [*first, *rest]

    async def _fetch(self, count: int, timeout: float) -> list[Msg]:
        try:
            return list(await self._subscription.fetch(count, timeout=timeout))
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        except nats.errors.Error:
            if self._client.is_closed:
                return []
            raise

    def event(self, batch: Sequence[object]) -> bytes:
        records = [record(message) for message in batch if isinstance(message, Msg)]
        return orjson.dumps(
            {"eventSource": "ember:nats", "eventSourceArn": self._arn, "records": records}
        )

    async def ack(self, batch: Sequence[object]) -> None:
        await asyncio.gather(*(m.ack() for m in batch if isinstance(m, Msg)))

    async def requeue(self, batch: Sequence[object]) -> None:
        await asyncio.gather(*(m.nak() for m in batch if isinstance(m, Msg)))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._subscription.unsubscribe()


class JetStreamSource:
    """See ``ember.sources.base.Source``: one mapping's durable consumer on one server."""

    def __init__(
        self, broker: Broker, stream: str, subject: str, durable: str, arn: str, ack_wait: float
    ) -> None:
        self._broker = broker
        self._stream = stream
        self._subject = subject
        self._durable = durable
        self._arn = arn
        self._ack_wait = ack_wait
        self._client: Client | None = None
        self._js: JetStreamContext | None = None

    def _unavailable(self, error: BaseException) -> BrokerUnavailable:
        return BrokerUnavailable(
            f"Connection error: the NATS server {self._broker.describe()} could not be used "
            f"({type(error).__name__}) for stream {self._stream}",
            self._broker.describe(),
        )

    async def open(self) -> None:
        try:
            self._client = await nats.connect(
                self._broker.url,
                connect_timeout=CONNECT_TIMEOUT,
                allow_reconnect=False,
                max_reconnect_attempts=0,
            )
            self._js = self._client.jetstream()
            config = api.ConsumerConfig(
                durable_name=self._durable,
                filter_subject=self._subject,
                ack_policy=api.AckPolicy.EXPLICIT,
                deliver_policy=api.DeliverPolicy.ALL,
                ack_wait=self._ack_wait,
            )
            await self._js.add_consumer(self._stream, config)
        except Exception as error:
            await self.close()
            raise self._unavailable(error) from None

    def _context(self) -> JetStreamContext:
        if self._js is None or self._client is None or self._client.is_closed:
            raise self._unavailable(ConnectionError("closed"))
        return self._js

    async def consumer(self, prefetch: int) -> JetStreamConsumer:
        js = self._context()
        try:
            subscription = await js.pull_subscribe_bind(self._durable, self._stream)
        except Exception as error:
            raise self._unavailable(error) from None
        assert self._client is not None
        return JetStreamConsumer(self._client, subscription, self._arn)

    async def backlog(self) -> int:
        js = self._context()
        try:
            info = await js.consumer_info(self._stream, self._durable)
        except Exception as error:
            raise self._unavailable(error) from None
        return int(info.num_pending or 0)

    async def retire(self) -> None:
        if self._js is None:
            await self.open()
        js = self._context()
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_consumer(self._stream, self._durable)

    @property
    def closed(self) -> bool:
        return self._client is None or self._client.is_closed

    async def close(self) -> None:
        client, self._client, self._js = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


__all__ = ["JetStreamConsumer", "JetStreamSource", "record"]
