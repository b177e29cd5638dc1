"""RabbitMQ (Lambda's Amazon MQ for RabbitMQ source) over aio-pika.

One AMQP connection per mapping and node; one channel per consumer, its
prefetch the mapping's BatchSize, so a consumer holds at most one batch and
the rest of the queue stays with the broker for the other consumers (of this
node or another). Deliveries on one channel carry increasing tags and a batch
is a run of consecutive ones, so one ``multiple`` ack (or nack) settles it.
The event is Lambda's (``aws:rmq``, ``rmqMessagesByQueue`` keyed
``QUEUE::VHOST``, ``basicProperties`` as Lambda spells them, the body base64).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import logging
from collections.abc import Sequence
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from ember.errors import BrokerUnavailable
from ember.sources.brokers import Broker

log = logging.getLogger("ember.sources")

CONNECT_TIMEOUT = 5.0
_Message = AbstractIncomingMessage


def _header(value: Any) -> Any:
    """A header as Lambda's Java poller renders it: strings as their UTF-8 bytes."""
    if isinstance(value, str):
        return {"bytes": list(value.encode())}
    if isinstance(value, bytes | bytearray):
        return {"bytes": list(value)}
    if isinstance(value, dict):
        return {key: _header(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_header(item) for item in value]
    if isinstance(value, datetime.datetime):
        return _timestamp(value)
    return value


def _timestamp(moment: datetime.datetime | None) -> str | None:
    """Java's default date format, as Lambda's events carry it: ``Jan 1, 1970, 12:33:41 AM``."""
    if moment is None:
        return None
    hour = moment.hour % 12 or 12
    return moment.strftime(f"%b {moment.day}, %Y, {hour}:%M:%S %p")


def _expiration(message: _Message) -> str | None:
    """AMQP's expiration, milliseconds as a string (aio-pika decodes it to seconds)."""
    value = message.expiration
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        return str(round(value.total_seconds() * 1000))
    if isinstance(value, int | float):
        return str(round(value * 1000))
    return None


def record(message: _Message) -> dict[str, Any]:
    """One message of ``rmqMessagesByQueue``."""
    delivery = message.delivery_mode
    return {
        "basicProperties": {
            "contentType": message.content_type,
            "contentEncoding": message.content_encoding,
            "headers": _header(message.headers) if message.headers else None,
            "deliveryMode": int(delivery) if delivery is not None else None,
            "priority": message.priority,
            "correlationId": message.correlation_id,
            "replyTo": message.reply_to,
            "expiration": _expiration(message),
            "messageId": message.message_id,
            "timestamp": _timestamp(message.timestamp),
            "type": message.type,
            "userId": message.user_id,
            "appId": message.app_id,
            "clusterId": getattr(message, "cluster_id", None) or None,
            "bodySize": len(message.body),
        },
        "redelivered": bool(message.redelivered),
        "data": base64.b64encode(message.body).decode(),
    }


class RabbitConsumer:
    """See ``ember.sources.base.Consumer``: one channel, its deliveries in an inbox."""

    def __init__(self, channel: AbstractChannel, key: str, arn: str) -> None:
        self._channel = channel
        self._key = key  # QUEUE::VHOST
        self._arn = arn
        # Deliveries in order; None: the channel closed (wakes a waiting batch).
        self._inbox: asyncio.Queue[_Message | None] = asyncio.Queue()
        channel.close_callbacks.add(self._closed)

    def _closed(self, *_: Any) -> None:
        self._inbox.put_nowait(None)

    async def deliver(self, message: _Message) -> None:
        """aio-pika's consume callback."""
        self._inbox.put_nowait(message)

    async def batch(self, size: int, window: float) -> Sequence[object] | None:
        first = await self._inbox.get()
        if first is None:
            return None
        taken: list[_Message] = [first]
        deadline = asyncio.get_running_loop().time() + window
        while len(taken) < size:
            message = await self._next(deadline)
            if message is None:
                break
            taken.append(message)
        return taken

    async def _next(self, deadline: float) -> _Message | None:
        try:
            message = self._inbox.get_nowait()
        except asyncio.QueueEmpty:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return None
            try:
                message = await asyncio.wait_for(self._inbox.get(), remaining)
            except TimeoutError:
                return None
        if message is None:  # closed: let the next batch() see it
            self._inbox.put_nowait(None)
        return message

    def event(self, batch: Sequence[object]) -> bytes:
        messages = [record(message) for message in _messages(batch)]
        return orjson.dumps(
            {
                "eventSource": "aws:rmq",
                "eventSourceArn": self._arn,
                "rmqMessagesByQueue": {self._key: messages},
            }
        )

    async def ack(self, batch: Sequence[object]) -> None:
        await _messages(batch)[-1].ack(multiple=True)

    async def requeue(self, batch: Sequence[object]) -> None:
        await _messages(batch)[-1].nack(multiple=True, requeue=True)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._channel.close()


def _messages(batch: Sequence[object]) -> list[_Message]:
    return [message for message in batch if isinstance(message, AbstractIncomingMessage)]


class RabbitSource:
    """See ``ember.sources.base.Source``: one mapping's queue on one broker."""

    def __init__(self, broker: Broker, queue: str, vhost: str | None, arn: str) -> None:
        self._broker = broker
        self._queue = queue
        self._vhost = vhost or broker.vhost()
        self._arn = arn
        self._connection: AbstractConnection | None = None
        self._admin: AbstractChannel | None = None

    @property
    def key(self) -> str:
        """``QUEUE::VHOST``: the key of ``rmqMessagesByQueue``."""
        return f"{self._queue}::{self._vhost}"

    def _unavailable(self, error: BaseException) -> BrokerUnavailable:
        # The error's text may quote the URL; aio-pika masks its password, but the
        # message is built from the error's type alone to be sure.
        return BrokerUnavailable(
            f"Connection error: the broker {self._broker.describe()} could not be used "
            f"({type(error).__name__}) for queue {self.key}",
            self._broker.describe(),
        )

    async def open(self) -> None:
        url = self._broker.with_vhost(self._vhost)
        try:
            self._connection = await aio_pika.connect(
                url,
                timeout=CONNECT_TIMEOUT,
                # How the broker's operator tells this mapping's connection apart.
                client_properties={"connection_name": f"ember: {self.key}"},
            )
            # Bounded as the connect is: a poller waits for its open to end.
            async with asyncio.timeout(CONNECT_TIMEOUT):
                self._admin = await self._connection.channel()
                await self._admin.declare_queue(self._queue, passive=True)
        except Exception as error:
            await self.close()
            raise self._unavailable(error) from None

    async def consumer(self, prefetch: int) -> RabbitConsumer:
        if self._connection is None:
            raise self._unavailable(ConnectionError("not open"))
        try:
            channel = await self._connection.channel()
            await channel.set_qos(prefetch_count=prefetch)
            queue = await channel.declare_queue(self._queue, passive=True)
            consumer = RabbitConsumer(channel, self.key, self._arn)
            await queue.consume(consumer.deliver, no_ack=False)
        except Exception as error:
            raise self._unavailable(error) from None
        return consumer

    async def backlog(self) -> int:
        if self._admin is None or self._admin.is_closed:
            raise self._unavailable(ConnectionError("closed"))
        try:
            queue = await self._admin.declare_queue(self._queue, passive=True)
        except Exception as error:
            raise self._unavailable(error) from None
        result = queue.declaration_result
        return int(result.message_count or 0)

    async def retire(self) -> None:
        return None  # the queue is the user's; a consumer leaves nothing behind

    @property
    def closed(self) -> bool:
        return self._connection is None or self._connection.is_closed

    async def close(self) -> None:
        connection, self._connection, self._admin = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


__all__ = ["RabbitConsumer", "RabbitSource", "record"]
