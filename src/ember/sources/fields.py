"""The members of an event-source-mapping request, checked with Lambda's messages.

Each function takes a request member (or the body) and returns it typed, or
raises ``ValidationError`` (Lambda's constraint wording) or
``InvalidParameterValue`` (a value Lambda refuses, or one ember cannot honour:
named, never ignored).
"""

from __future__ import annotations

from typing import Any

from ember.errors import InvalidParameterValue, ValidationError
from ember.sources.brokers import ARN, ARN_PATTERN, NATS_ARN

# The SourceAccessConfigurations types an Amazon MQ for RabbitMQ mapping takes.
ACCESS_TYPES = ("BASIC_AUTH", "VIRTUAL_HOST")
# CreateEventSourceMapping members that belong to other kinds of source (streams, SQS,
# Kafka, DocumentDB) or that ember does not honour: refused by name, never ignored.
_NOT_FOR_MQ = (
    "StartingPosition",
    "StartingPositionTimestamp",
    "ParallelizationFactor",
    "DestinationConfig",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "MaximumRetryAttempts",
    "TumblingWindowInSeconds",
    "Topics",
    "SelfManagedEventSource",
    "FunctionResponseTypes",
    "AmazonManagedKafkaEventSourceConfig",
    "SelfManagedKafkaEventSourceConfig",
    "DocumentDBEventSourceConfig",
    "ScalingConfig",
    "ProvisionedPollerConfig",
    "FilterCriteria",
    "KMSKeyArn",
    "MetricsConfig",
    "LoggingConfig",
)


def refuse_foreign(body: dict[str, Any]) -> None:
    for member in _NOT_FOR_MQ:
        if body.get(member) is not None:
            raise InvalidParameterValue(
                f"Unsupported parameter for an Amazon MQ (or NATS) event source: {member}."
            )


def enabled(body: dict[str, Any]) -> bool | None:
    value = body.get("Enabled")
    if value is not None and not isinstance(value, bool):
        raise ValidationError.constraint(value, "enabled", "Member must be a boolean")
    return value


def event_source_arn(value: Any) -> str:
    if value is None:
        raise InvalidParameterValue(
            "Unrecognized event source: EventSourceArn must name an Amazon MQ for RabbitMQ "
            "broker, arn:aws:mq:REGION:ACCOUNT:broker:NAME:ID."
        )
    if isinstance(value, str) and NATS_ARN.match(value):
        return value  # ember's extension: not an AWS ARN, so not of Lambda's pattern
    if not isinstance(value, str) or not ARN.fullmatch(value):
        raise ValidationError.constraint(
            value,
            "eventSourceArn",
            f"Member must satisfy regular expression pattern: {ARN_PATTERN}",
        )
    return value


def queue(value: Any) -> str:
    if value is None:
        raise InvalidParameterValue(
            "Queues is required for an Amazon MQ event source: name the one queue to consume "
            "(for a NATS JetStream stream, the subject to consume, e.g. orders.>)."
        )
    if not isinstance(value, list) or len(value) != 1:
        size = len(value) if isinstance(value, list) else value
        raise ValidationError.constraint(
            size,
            "queues",
            "Member must have length less than or equal to 1"
            if isinstance(value, list) and value
            else "Member must have length greater than or equal to 1",
        )
    queue = value[0]
    if not isinstance(queue, str) or not 1 <= len(queue) <= 1000:
        raise ValidationError.constraint(
            queue, "queues.member", "Member must have length between 1 and 1000"
        )
    return queue


def access(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > 23:
        raise ValidationError.constraint(
            value, "sourceAccessConfigurations", "Member must have length less than or equal to 23"
        )
    found: list[tuple[str, str]] = []
    for entry in value:
        kind, uri = (entry.get("Type"), entry.get("URI")) if isinstance(entry, dict) else (0, 0)
        if kind not in ACCESS_TYPES:
            raise InvalidParameterValue(
                f"Unsupported SourceAccessConfiguration type {kind} for an Amazon MQ for "
                "RabbitMQ event source: use BASIC_AUTH and VIRTUAL_HOST."
            )
        if not isinstance(uri, str) or not 1 <= len(uri) <= 200:
            raise ValidationError.constraint(
                uri,
                "sourceAccessConfigurations.member.uRI",
                "Member must have length between 1 and 200",
            )
        if any(kind == seen for seen, _ in found):
            raise InvalidParameterValue(f"Only one {kind} SourceAccessConfiguration is allowed.")
        found.append((kind, uri))
    return tuple(found)


__all__ = ["ACCESS_TYPES", "access", "enabled", "event_source_arn", "queue", "refuse_foreign"]
