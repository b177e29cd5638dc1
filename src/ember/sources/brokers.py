"""The brokers an event source mapping may name, as the operator declared them.

Lambda names an Amazon MQ broker by ARN and reads its credentials from a
Secrets Manager secret. ember has neither service, so the operator declares
each broker once (``ember serve --broker NAME=amqp://USER:PASS@HOST:5672``)
and a mapping names it with the ARN Lambda's clients already send,
``arn:aws:mq:REGION:ACCOUNT:broker:NAME:ID`` (any ID): templates written for
Lambda apply unchanged, and no credential ever crosses the API. A URL is
shown only without its credentials (``describe``).

ember's extension, NATS JetStream, is declared the same way
(``--broker NAME=nats://HOST:4222``) and named
``arn:ember:nats:REGION:ACCOUNT:stream:NAME:STREAM``: the stream STREAM of
the server NAME.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ember.errors import InvalidParameterValue

# Lambda's Arn shape (botocore), and the Amazon MQ broker ARN inside it.
ARN_PATTERN = (
    r"arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?"
    r"-[a-z]+-\d{1})?:(\d{12})?:(.*)"
)
ARN = re.compile(ARN_PATTERN)
_BROKER = re.compile(r"^arn:aws[a-zA-Z0-9-]*:mq:[^:]*:\d{12}:broker:(?P<name>[^:]+):(?P<id>[^:]+)$")
NATS_ARN = re.compile(r"^arn:ember:nats:[^:]*:\d{12}:stream:(?P<name>[^:]+):(?P<stream>[\w-]+)$")
RABBITMQ, NATS = "rabbitmq", "nats"
_KINDS = {"amqp": RABBITMQ, "amqps": RABBITMQ, "nats": NATS, "tls": NATS}


@dataclass(frozen=True)
class Broker:
    """One declared broker: its name and URL (credentials included: keep it inside)."""

    name: str
    url: str

    @property
    def kind(self) -> str:
        """``rabbitmq`` (amqp://, amqps://) or ``nats`` (nats://, tls://)."""
        return _KINDS.get(urlsplit(self.url).scheme, RABBITMQ)

    def describe(self) -> str:
        """``NAME at HOST:PORT``: how logs and errors name it, never with credentials."""
        parts = urlsplit(self.url)
        default = {"amqps": 5671, "nats": 4222, "tls": 4222}.get(parts.scheme, 5672)
        return f"{self.name} at {parts.hostname}:{parts.port or default}"

    def with_vhost(self, vhost: str) -> str:
        """The URL on ``vhost`` (a VIRTUAL_HOST of the mapping), percent-encoded as AMQP asks."""
        parts = urlsplit(self.url)
        path = "/" + vhost.replace("%", "%25").replace("/", "%2F")
        return parts._replace(path=path).geturl()

    def vhost(self) -> str:
        """The URL's own virtual host (``/`` when it names none)."""
        path = urlsplit(self.url).path
        return unquote(path[1:]) if len(path) > 1 else "/"


class Brokers:
    """The declared brokers, by name; resolves a mapping's ``EventSourceArn``."""

    def __init__(self, declared: tuple[tuple[str, str], ...] = ()) -> None:
        self._brokers = {name: Broker(name, url) for name, url in declared}

    def names(self) -> list[str]:
        return sorted(self._brokers)

    def resolve(self, arn: str) -> Broker:
        """The broker a broker ARN names, or InvalidParameterValue saying why not."""
        match = _BROKER.match(arn) or NATS_ARN.match(arn)
        if match is None:
            raise InvalidParameterValue(
                f"Unsupported event source {arn}: ember maps Amazon MQ for RabbitMQ brokers, "
                "arn:aws:mq:REGION:ACCOUNT:broker:NAME:ID, and NATS JetStream streams, "
                "arn:ember:nats:REGION:ACCOUNT:stream:NAME:STREAM"
            )
        kind = NATS if arn.startswith("arn:ember:nats:") else RABBITMQ
        broker = self._brokers.get(match["name"])
        if broker is not None and broker.kind != kind:
            raise InvalidParameterValue(
                f"The broker {broker.name} is a {broker.kind} server: {arn} names a {kind} one."
            )
        if broker is None:
            known = ", ".join(self.names()) or "none"
            scheme = "nats" if kind == NATS else "amqp"
            raise InvalidParameterValue(
                f"The broker {match['name']} is not declared on this ember (declared: "
                f"{known}); start it with --broker {match['name']}={scheme}://USER:PASS@HOST:PORT"
            )
        return broker

    def get(self, arn: str) -> Broker | None:
        """``resolve`` without the error: None when the ARN names no declared broker."""
        try:
            return self.resolve(arn)
        except InvalidParameterValue:
            return None


def stream_of(arn: str) -> str | None:
    """The JetStream stream a NATS ARN names (None for any other ARN)."""
    match = NATS_ARN.match(arn)
    return match["stream"] if match else None


__all__ = ["ARN", "ARN_PATTERN", "NATS", "NATS_ARN", "RABBITMQ", "Broker", "Brokers", "stream_of"]
