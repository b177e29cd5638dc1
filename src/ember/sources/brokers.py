"""The brokers an event source mapping may name, as the operator declared them.

Lambda names an Amazon MQ broker by ARN and reads its credentials from a
Secrets Manager secret. ember has neither service, so the operator declares
each broker once (``ember serve --broker NAME=amqp://USER:PASS@HOST:5672``)
and a mapping names it with the ARN Lambda's clients already send,
``arn:aws:mq:REGION:ACCOUNT:broker:NAME:ID`` (any ID): templates written for
Lambda apply unchanged, and no credential ever crosses the API. A URL is
shown only without its credentials (``describe``).
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


@dataclass(frozen=True)
class Broker:
    """One declared broker: its name and URL (credentials included: keep it inside)."""

    name: str
    url: str

    def describe(self) -> str:
        """``NAME at HOST:PORT``: how logs and errors name it, never with credentials."""
        parts = urlsplit(self.url)
        port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
        return f"{self.name} at {parts.hostname}:{port}"

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
        match = _BROKER.match(arn)
        if match is None:
            raise InvalidParameterValue(
                f"Unsupported event source {arn}: ember maps Amazon MQ for RabbitMQ brokers, "
                "arn:aws:mq:REGION:ACCOUNT:broker:NAME:ID"
            )
        broker = self._brokers.get(match["name"])
        if broker is None:
            known = ", ".join(self.names()) or "none"
            raise InvalidParameterValue(
                f"The broker {match['name']} is not declared on this ember (declared: "
                f"{known}); start it with --broker {match['name']}=amqp://USER:PASS@HOST:PORT"
            )
        return broker

    def get(self, arn: str) -> Broker | None:
        """``resolve`` without the error: None when the ARN names no declared broker."""
        try:
            return self.resolve(arn)
        except InvalidParameterValue:
            return None


__all__ = ["ARN", "ARN_PATTERN", "Broker", "Brokers"]
