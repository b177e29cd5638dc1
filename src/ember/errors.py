"""The error tree of ember's services; the API maps it to HTTP in one place.

    EmberError                     every error a service raises on purpose
    ├── ClientError                the request is at fault (4xx)
    │   ├── ResourceNotFound       ResourceNotFoundException
    │   │   └── ProvisionedConcurrencyConfigNotFound  (a function without that config)
    │   ├── ResourceConflict       ResourceConflictException
    │   ├── ResourceInUse          ResourceInUseException (a mapping mid-transition)
    │   ├── InvalidParameterValue  InvalidParameterValueException
    │   ├── ValidationError        ValidationException
    │   ├── RequestTooLarge        RequestEntityTooLargeException
    │   ├── HeadersTooLarge        RequestHeaderFieldsTooLargeException (request head)
    │   ├── RequestTimeout         RequestTimeoutException (a request that stalled)
    │   ├── InvalidRequestContent  InvalidRequestContentException
    │   ├── PreconditionFailed     PreconditionFailedException
    │   ├── CodeStorageExceeded    CodeStorageExceededException (an account's code quota)
    │   ├── TooManyRequests        TooManyRequestsException (carries Reason, Retry-After)
    │   └── AuthError              the caller is not who it claims, or may not do this (403)
    │       ├── MissingAuthenticationToken  MissingAuthenticationTokenException
    │       ├── IncompleteSignature  IncompleteSignatureException (a garbled signature)
    │       ├── UnrecognizedClient   UnrecognizedClientException (unknown access key)
    │       ├── InvalidSignature     InvalidSignatureException (wrong, expired, mis-scoped)
    │       └── AccessDenied         AccessDeniedException (a policy refuses the action)
    └── PlatformError              ember is at fault (5xx): ServiceException
        ├── SandboxUnavailable     no sandbox could be started
        ├── WorkerLost             the worker host running a call died or was cut off
        ├── StorageUnavailable     the metadata database or blob store cannot be reached
        ├── ThrottleUnavailable    the shared throttle store (Redis) cannot be reached
        ├── BrokerUnavailable      an event source's broker (RabbitMQ) cannot be reached
        ├── StartupRefused         the host cannot give what the settings ask for
        └── RuntimeInstallFailed   a runtime could not be downloaded, or failed its check

Each class names the Lambda error code it becomes (``code``); the HTTP status
lives only in ``ember.api.errors``.
"""

from __future__ import annotations


class EmberError(Exception):
    code = "ServiceException"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientError(EmberError):
    code = "InvalidRequestContentException"


class ResourceNotFound(ClientError):
    code = "ResourceNotFoundException"


class ProvisionedConcurrencyConfigNotFound(ResourceNotFound):
    code = "ProvisionedConcurrencyConfigNotFoundException"


class ResourceConflict(ClientError):
    code = "ResourceConflictException"


class ResourceInUse(ClientError):
    code = "ResourceInUseException"


class InvalidParameterValue(ClientError):
    code = "InvalidParameterValueException"


class ValidationError(ClientError):
    code = "ValidationException"

    @classmethod
    def constraint(cls, value: object, member: str, constraint: str) -> ValidationError:
        """Lambda's wording: ``1 validation error detected: Value 'x' at 'm' ...``."""
        return cls(
            f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
            f"constraint: {constraint}"
        )


class RequestTooLarge(ClientError):
    code = "RequestEntityTooLargeException"


class MisdirectedRequest(ClientError):
    """The request's Host names a server this is not (a DNS-rebinding page, a wrong
    proxy): nothing was done. Not a Lambda error; HTTP's 421 says the same."""

    code = "MisdirectedRequestException"


class HeadersTooLarge(ClientError):
    code = "RequestHeaderFieldsTooLargeException"


class RequestTimeout(ClientError):
    code = "RequestTimeoutException"


class InvalidRequestContent(ClientError):
    code = "InvalidRequestContentException"


class PreconditionFailed(ClientError):
    code = "PreconditionFailedException"


class CodeStorageExceeded(ClientError):
    code = "CodeStorageExceededException"


class TooManyRequests(ClientError):
    code = "TooManyRequestsException"

    def __init__(self, message: str, reason: str, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_seconds = retry_after_seconds


class AuthError(ClientError):
    """Authentication or authorization refused the request; nothing was done."""

    code = "AccessDeniedException"


class MissingAuthenticationToken(AuthError):
    code = "MissingAuthenticationTokenException"

    def __init__(self, message: str = "Missing Authentication Token") -> None:
        super().__init__(message)


class IncompleteSignature(AuthError):
    code = "IncompleteSignatureException"


class UnrecognizedClient(AuthError):
    code = "UnrecognizedClientException"

    def __init__(
        self, message: str = "The security token included in the request is invalid."
    ) -> None:
        super().__init__(message)


class InvalidSignature(AuthError):
    code = "InvalidSignatureException"

    MISMATCH = (
        "The request signature we calculated does not match the signature you provided. "
        "Check your AWS Secret Access Key and signing method. "
        "Consult the service documentation for details."
    )

    def __init__(self, message: str = MISMATCH) -> None:
        super().__init__(message)


class AccessDenied(AuthError):
    code = "AccessDeniedException"


class PlatformError(EmberError):
    code = "ServiceException"


class SandboxUnavailable(PlatformError):
    code = "ServiceException"


class WorkerLost(PlatformError):
    """The worker host running a call died, was cut off or never answered, after the
    call had started there: whether it ran is unknown, so it is not retried."""

    code = "ServiceException"


class StorageUnavailable(PlatformError):
    """A shared engine (PostgreSQL, the S3 store) did not answer; the call did nothing
    it reported as done. The client may retry."""

    code = "ServiceException"


class ThrottleUnavailable(PlatformError):
    """The throttle's shared store did not answer; ``store`` names it (``Redis at
    HOST:PORT``), never with credentials. Nothing was counted; the client may retry."""

    code = "ServiceException"

    def __init__(self, message: str, store: str) -> None:
        super().__init__(message)
        self.store = store


class BrokerUnavailable(PlatformError):
    """An event source mapping's broker did not answer or refused the consumer;
    ``broker`` names it (``NAME at HOST:PORT``), never with credentials. The
    mapping's poller retries with backoff; no message was acknowledged."""

    code = "ServiceException"

    def __init__(self, message: str, broker: str) -> None:
        super().__init__(message)
        self.broker = broker


class StartupRefused(PlatformError):
    """The server will not serve: said in one line to the operator, no traceback."""


class RuntimeInstallFailed(PlatformError):
    """The npm registry could not be reached, or sent a package that failed its check."""
