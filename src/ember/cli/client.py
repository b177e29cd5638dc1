"""A small synchronous client for ember's Lambda-compatible REST API.

The CLI talks to the server only through this module, over HTTP: it never
imports server internals. Every failure (an error response, an unreachable
server, a response that is not what the API promises) surfaces as `ApiError`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from ember.cli.credentials import Credentials

FUNCTIONS_PATH = "/2015-03-31/functions"
LAYERS_PATH = "/2018-10-31/layers"
# Lambda's longest timeout is 900 s; the margin covers init and queueing.
INVOKE_TIMEOUT_SECONDS = 930.0
# Installing a runtime downloads it on the server first.
INSTALL_TIMEOUT_SECONDS = 600.0
DEFAULT_TIMEOUT_SECONDS = 60.0
LIST_PAGE_SIZE = 50
ACCOUNTS_PATH = "/_ember/accounts"
KEYS_PATH = "/_ember/keys"
# The service name ember verifies signatures for: it is Lambda's API.
SIGNING_SERVICE = "lambda"
# Only these headers are signed: a proxy may rewrite the others (Connection,
# Accept-Encoding), and a signature over them would then fail for no reason.
SIGNED_HEADERS = ("host", "content-type", "content-md5")


class ApiError(Exception):
    """A failed API call: `code` is Lambda's error type, e.g. ResourceNotFoundException.

    `status` is the HTTP status, or 0 when no response arrived at all
    (code "ConnectionError" or "Timeout").
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class InvokeResponse:
    """The outcome of a RequestResponse invocation.

    `function_error` is set ("Unhandled", "Handled") when the function itself
    failed; the call still succeeded at the HTTP level and `payload` holds the
    error document. `log_result` is the already-decoded log tail, if asked for.
    """

    status: int
    payload: bytes
    function_error: str | None
    log_result: str | None
    request_id: str | None
    executed_version: str | None


def normalize_endpoint(endpoint: str) -> str:
    """Return `endpoint` with a scheme and without a trailing slash."""
    endpoint = endpoint.strip().rstrip("/")
    if "://" not in endpoint:
        endpoint = f"http://{endpoint}"
    return endpoint


def function_path(name: str, suffix: str = "") -> str:
    """The API path of one function; the name is quoted since it may be an ARN."""
    return f"{FUNCTIONS_PATH}/{quote(name, safe='')}{suffix}"


def error_from_response(response: httpx.Response) -> ApiError:
    """Build an ApiError from a Lambda-style error response.

    The code comes from `x-amzn-ErrorType` (AWS may append ":<url>", which is
    dropped); the message from the JSON body's `message` or `Message`. Either
    falls back to something readable when the server is not ember.
    """
    code = response.headers.get("x-amzn-ErrorType", "").split(":", 1)[0].strip()
    message = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = str(body.get("message") or body.get("Message") or "")
        code = code or str(body.get("__type") or "")
    if not message:
        text = response.text.strip()
        message = text[:200] if text else response.reason_phrase
    return ApiError(response.status_code, code or f"HTTP{response.status_code}", message)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    """The response body as a JSON object, or ApiError("InvalidResponse")."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ApiError(
            response.status_code, "InvalidResponse", f"expected a JSON object from {response.url}"
        )
    return body


def _decode_log_result(value: str | None) -> str | None:
    """Decode the base64 `X-Amz-Log-Result` header; keep it raw if it is not base64."""
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return value


class SigV4(httpx.Auth):
    """Signs every request with AWS Signature Version 4, as boto3 would (botocore's signer).

    The body is read first so that its SHA-256 is part of the signature: a
    request whose payload was changed on the way is refused by the server.
    """

    requires_request_body = True

    def __init__(self, credentials: Credentials, service: str = SIGNING_SERVICE) -> None:
        self.credentials = credentials
        self._signer = SigV4Auth(
            BotoCredentials(credentials.access_key, credentials.secret_key, credentials.token),
            service,
            credentials.region,
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if request.url.query:
            # httpx writes a space in a query as "+"; SigV4 reads "+" as a plus sign
            # (botocore signs the query as it is), so send what AWS's SDKs send: %20.
            pairs = parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True)
            encoded = urlencode(pairs, quote_via=quote, safe="-_.~")
            request.url = request.url.copy_with(query=encoded.encode("ascii"))
        signed = AWSRequest(
            method=request.method,
            url=str(request.url),
            data=request.content,
            headers=_headers_to_sign(request.headers),
        )
        self._signer.add_auth(signed)
        for name, value in signed.headers.items():
            if name.lower() not in SIGNED_HEADERS:
                request.headers[name] = value
        yield request


def _headers_to_sign(headers: httpx.Headers) -> dict[str, str]:
    """The request's Host, Content-Type and X-Amz-* headers (see SIGNED_HEADERS)."""
    return {
        name: value
        for name, value in headers.items()
        if name.lower() in SIGNED_HEADERS or name.lower().startswith("x-amz-")
    }


class EmberClient:
    """A synchronous client of one ember endpoint. Use it as a context manager.

    `auth` signs every request (``SigV4``; None sends them unsigned, which only
    a server run with ``--auth none`` accepts). `transport` exists so tests can
    inject `httpx.MockTransport`.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        auth: httpx.Auth | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.endpoint = normalize_endpoint(endpoint)
        self._http = httpx.Client(
            base_url=self.endpoint,
            timeout=DEFAULT_TIMEOUT_SECONDS,
            auth=auth,
            transport=transport,
        )

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def __enter__(self) -> EmberClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transport ---------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> httpx.Response:
        """Send one request; return the response if its status is below 400.

        Raises ApiError for error responses and for transport failures, so
        callers never see httpx exceptions.
        """
        try:
            response = self._http.request(
                method,
                path,
                json=json_body,
                content=content,
                params=params,
                headers=headers,
                timeout=timeout,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ApiError(
                0,
                "ConnectionError",
                f"cannot reach ember at {self.endpoint}: is `ember serve` running?",
            ) from exc
        except httpx.TimeoutException as exc:
            raise ApiError(
                0, "Timeout", f"no response from ember at {self.endpoint} within {timeout:g} s"
            ) from exc
        except httpx.TransportError as exc:
            raise ApiError(
                0, "ConnectionError", f"connection to ember at {self.endpoint} failed: {exc}"
            ) from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    # -- functions ---------------------------------------------------------

    def create_function(self, body: dict[str, Any]) -> dict[str, Any]:
        """CreateFunction; returns the new function's configuration."""
        return _json_object(self._request("POST", FUNCTIONS_PATH, json_body=body))

    def get_function(self, name: str) -> dict[str, Any]:
        """GetFunction; returns {"Configuration": {...}, "Code": {...}}."""
        return _json_object(self._request("GET", function_path(name)))

    def update_function_code(self, name: str, zip_bytes: bytes) -> dict[str, Any]:
        """UpdateFunctionCode with an inline zip; returns the configuration."""
        body = {"ZipFile": base64.b64encode(zip_bytes).decode("ascii")}
        return _json_object(self._request("PUT", function_path(name, "/code"), json_body=body))

    def update_function_configuration(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """UpdateFunctionConfiguration; only the keys in `body` change."""
        path = function_path(name, "/configuration")
        return _json_object(self._request("PUT", path, json_body=body))

    def list_functions(self) -> list[dict[str, Any]]:
        """ListFunctions, following NextMarker through every page."""
        functions: list[dict[str, Any]] = []
        marker: str | None = None
        seen: set[str] = set()
        while True:
            params = {"MaxItems": str(LIST_PAGE_SIZE)}
            if marker:
                params["Marker"] = marker
            page = _json_object(self._request("GET", FUNCTIONS_PATH, params=params))
            functions.extend(page.get("Functions") or [])
            marker = page.get("NextMarker")
            # A marker seen before would loop forever; treat it as the end.
            if not marker or marker in seen:
                return functions
            seen.add(marker)

    def delete_function(self, name: str) -> None:
        """DeleteFunction."""
        self._request("DELETE", function_path(name))

    def invoke(self, name: str, payload: bytes, *, log_tail: bool = False) -> InvokeResponse:
        """Invoke synchronously (RequestResponse) and wait for the result."""
        headers = {"X-Amz-Invocation-Type": "RequestResponse"}
        if log_tail:
            headers["X-Amz-Log-Type"] = "Tail"
        response = self._request(
            "POST",
            function_path(name, "/invocations"),
            content=payload,
            headers=headers,
            timeout=INVOKE_TIMEOUT_SECONDS,
        )
        return InvokeResponse(
            status=response.status_code,
            payload=response.content,
            function_error=response.headers.get("X-Amz-Function-Error"),
            log_result=_decode_log_result(response.headers.get("X-Amz-Log-Result")),
            request_id=response.headers.get("x-amzn-RequestId"),
            executed_version=response.headers.get("X-Amz-Executed-Version"),
        )

    # -- ember extensions --------------------------------------------------

    def logs(self, name: str, since: int | None = None) -> tuple[str, int]:
        """A function's logs from byte offset `since` (None: the recent tail).

        Returns (text, next offset); pass the offset back to read only what
        was written after this call.
        """
        params = {"since": str(since)} if since is not None else None
        path = f"/_ember/functions/{quote(name, safe='')}/logs"
        response = self._request("GET", path, params=params)
        body = _json_object(response)
        text, offset = body.get("logs"), body.get("next")
        if not isinstance(text, str) or not isinstance(offset, int):
            raise ApiError(response.status_code, "InvalidResponse", "malformed logs response")
        return text, offset

    def sandbox_settings(self, name: str, changes: dict[str, Any] | None = None) -> dict[str, Any]:
        """ember's sandbox settings of NAME (Egress, Isolation); PUT when ``changes``."""
        path = f"/_ember/functions/{quote(name, safe='')}/sandbox"
        if changes:
            return _json_object(self._request("PUT", path, json_body=changes))
        return _json_object(self._request("GET", path))

    def audit(
        self,
        since: str | None = None,
        until: str | None = None,
        limit: int | None = None,
        marker: str | None = None,
    ) -> dict[str, Any]:
        """One page of the audit log, newest first: ``{"Events": [...], "NextMarker"}``.

        ``since``/``until`` go as given (ISO 8601, Unix seconds or an age such as
        "10m"): the server reads them against its own clock.
        """
        given = {"since": since, "until": until, "limit": limit, "next": marker}
        params = {key: str(value) for key, value in given.items() if value is not None}
        body = _json_object(self._request("GET", "/_ember/audit", params=params))
        if not isinstance(body.get("Events"), list):
            raise ApiError(200, "InvalidResponse", "malformed audit response")
        return body

    def workers(self) -> dict[str, Any]:
        """The cluster's worker hosts: ``{"workers": [...], "note"}`` (a note on an
        embedded node, which has none)."""
        body = _json_object(self._request("GET", "/_ember/workers"))
        if not isinstance(body.get("workers"), list):
            raise ApiError(200, "InvalidResponse", "malformed workers response")
        return body

    def drain_worker(self, worker_id: str) -> dict[str, Any]:
        """Mark a worker draining; returns its entry as it is now."""
        path = f"/_ember/workers/{quote(worker_id, safe='')}/drain"
        return _json_object(self._request("POST", path))

    # -- observability -----------------------------------------------------

    def invocations(
        self,
        name: str,
        *,
        since: str | None = None,
        until: str | None = None,
        outcomes: list[str] | None = None,
        limit: int | None = None,
        marker: str | None = None,
    ) -> dict[str, Any]:
        """One page of a function's invocation history, newest first:
        ``{"Invocations": [...], "NextMarker"}``; times go as given (server's clock)."""
        given = {"since": since, "until": until, "limit": limit, "next": marker}
        params = {key: str(value) for key, value in given.items() if value is not None}
        if outcomes:
            params["outcome"] = ",".join(outcomes)
        path = f"/_ember/functions/{quote(name, safe='')}/invocations"
        body = _json_object(self._request("GET", path, params=params))
        if not isinstance(body.get("Invocations"), list):
            raise ApiError(200, "InvalidResponse", "malformed invocations response")
        return body

    def invocation(self, request_id: str) -> dict[str, Any]:
        """One invocation's record, its attempts and its log lines."""
        path = f"/_ember/invocations/{quote(request_id, safe='')}"
        return _json_object(self._request("GET", path))

    def top(self) -> dict[str, Any]:
        """Every function's counters since the node started (``ember top`` diffs two)."""
        return _json_object(self._request("GET", "/_ember/top"))

    def runtimes(self) -> dict[str, Any]:
        """The server's Node majors and every runtime it can run:
        ``{"runtimes": [{"runtime", "version", "path"}], "available": [...]}``."""
        return _json_object(self._request("GET", "/_ember/runtimes"))

    def install_runtime(self, runtime: str) -> dict[str, Any]:
        """Install ``runtime`` on the server (a download of tens of MB: a long timeout)."""
        path = f"/_ember/runtimes/{quote(runtime, safe='')}"
        return _json_object(self._request("PUT", path, timeout=INSTALL_TIMEOUT_SECONDS))

    def remove_runtime(self, runtime: str) -> None:
        self._request("DELETE", f"/_ember/runtimes/{quote(runtime, safe='')}")

    def health(self) -> dict[str, Any]:
        """The server's health document."""
        return _json_object(self._request("GET", "/health"))

    # -- asynchronous invocation -------------------------------------------

    def invoke_async(self, name: str, payload: bytes) -> str:
        """Invoke with InvocationType Event; returns the request id of the accepted event."""
        response = self._request(
            "POST",
            function_path(name, "/invocations"),
            content=payload,
            headers={"X-Amz-Invocation-Type": "Event"},
        )
        return str(response.headers.get("x-amzn-RequestId", ""))

    def dead_letters(self, name: str) -> list[dict[str, Any]]:
        """Every dead letter of ``name`` (following pages), without payloads."""
        path = f"/_ember/functions/{quote(name, safe='')}/dead-letters"
        letters: list[dict[str, Any]] = []
        params = {"limit": "1000"}
        while True:
            page = _json_object(self._request("GET", path, params=params))
            letters.extend(page.get("deadLetters") or [])
            if not page.get("next"):
                return letters
            params["after"] = str(page["next"])

    def dead_letter(self, name: str, dead_letter_id: str) -> dict[str, Any]:
        path = f"/_ember/functions/{quote(name, safe='')}/dead-letters/{quote(dead_letter_id)}"
        return _json_object(self._request("GET", path))

    def redrive(self, name: str, ids: list[str] | None = None) -> int:
        """Put dead letters back on the queue (all when ``ids`` is None); returns how many."""
        path = f"/_ember/functions/{quote(name, safe='')}/dead-letters/redrive"
        body = {} if ids is None else {"ids": ids}
        return int(_json_object(self._request("POST", path, json_body=body)).get("redriven", 0))

    def purge_dead_letters(self, name: str) -> int:
        path = f"/_ember/functions/{quote(name, safe='')}/dead-letters"
        return int(_json_object(self._request("DELETE", path)).get("purged", 0))

    def queue_stats(self) -> dict[str, Any]:
        return _json_object(self._request("GET", "/_ember/queue"))

    def set_limit(self, name: str, policy: dict[str, Any]) -> dict[str, Any]:
        """Attach a rate-limit policy (replacing the one of the same scope)."""
        path = f"/_ember/functions/{quote(name, safe='')}/limits"
        return _json_object(self._request("PUT", path, json_body=policy))

    def limits(self, name: str | None = None) -> list[dict[str, Any]]:
        """One function's throttle settings, or those of every function that has some."""
        if name is not None:
            path = f"/_ember/functions/{quote(name, safe='')}/limits"
            return [_json_object(self._request("GET", path))]
        return list(_json_object(self._request("GET", "/_ember/limits")).get("Functions") or [])

    def remove_limit(self, name: str, scope: str | None = None) -> None:
        """Remove the policy of ``scope`` (both scopes when None)."""
        params = {"scope": scope} if scope else None
        self._request("DELETE", f"/_ember/functions/{quote(name, safe='')}/limits", params=params)

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Any JSON API of ember (the manifest API uses it): the response object."""
        return _json_object(self._request(method, path, json_body=json_body, params=params))

    # -- layers --------------------------------------------------------------

    def publish_layer_version(
        self, name: str, zip_bytes: bytes, *, description: str = "", runtimes: list[str] | None
    ) -> dict[str, Any]:
        """PublishLayerVersion with an inline zip; returns the new version's description."""
        body: dict[str, Any] = {
            "Content": {"ZipFile": base64.b64encode(zip_bytes).decode("ascii")},
            "Description": description,
        }
        if runtimes:
            body["CompatibleRuntimes"] = runtimes
        path = f"{LAYERS_PATH}/{quote(name, safe='')}/versions"
        return _json_object(self._request("POST", path, json_body=body, timeout=300))

    def list_layer_versions(self, name: str) -> list[dict[str, Any]]:
        """ListLayerVersions (newest first; the first page is enough to find the latest)."""
        path = f"{LAYERS_PATH}/{quote(name, safe='')}/versions"
        return list(_json_object(self._request("GET", path)).get("LayerVersions") or [])

    # -- MCP tools -----------------------------------------------------------

    def expose_tool(self, name: str, settings: dict[str, Any]) -> dict[str, Any]:
        """Expose function NAME as an MCP tool (replacing its tool settings)."""
        path = f"/_ember/functions/{quote(name, safe='')}/tool"
        return _json_object(self._request("PUT", path, json_body=settings))

    def hide_tool(self, name: str) -> None:
        """Stop exposing NAME as a tool; not an error when it was not exposed."""
        self._request("DELETE", f"/_ember/functions/{quote(name, safe='')}/tool")

    def tools(self) -> list[dict[str, Any]]:
        """Every exposed function's tool settings, ordered by tool name."""
        return list(_json_object(self._request("GET", "/_ember/tools")).get("Tools") or [])

    # -- accounts and access keys --------------------------------------------

    def create_account(self, name: str) -> dict[str, Any]:
        """A new account and its root key (the secret is shown only in this answer)."""
        return _json_object(self._request("POST", ACCOUNTS_PATH, json_body={"Name": name}))

    def accounts(self) -> list[dict[str, Any]]:
        """The accounts the caller may see (all of them for the default account's root)."""
        return list(_json_object(self._request("GET", ACCOUNTS_PATH)).get("Accounts") or [])

    def create_key(
        self, account: str | None = None, user: str | None = None, policy: str | None = None
    ) -> dict[str, Any]:
        """A new access key: an account's root key, or a user's with an IAM ``policy`` (JSON)."""
        body = {
            field: value
            for field, value in (("AccountId", account), ("UserName", user), ("Policy", policy))
            if value is not None
        }
        return _json_object(self._request("POST", KEYS_PATH, json_body=body))

    def keys(self, account: str | None = None) -> list[dict[str, Any]]:
        """Access keys (of ``account``, or of the caller's), without their secrets."""
        params = {"AccountId": account} if account else None
        return list(_json_object(self._request("GET", KEYS_PATH, params=params)).get("Keys") or [])

    def delete_key(self, key_id: str) -> None:
        """Revoke access key ``key_id``: requests signed with it are refused from now on."""
        self._request("DELETE", f"{KEYS_PATH}/{quote(key_id, safe='')}")

    # -- MCP tokens ------------------------------------------------------------

    def create_token(self, account: str | None, tools: list[str] | None) -> dict[str, Any]:
        """A new MCP token; the answer holds the token itself, shown this once."""
        body: dict[str, Any] = {}
        if account is not None:
            body["AccountId"] = account
        if tools is not None:
            body["Tools"] = tools
        return _json_object(self._request("POST", "/_ember/tokens", json_body=body))

    def mcp_tokens(self) -> list[dict[str, Any]]:
        """The MCP tokens the caller may see (never the tokens themselves)."""
        return list(_json_object(self._request("GET", "/_ember/tokens")).get("Tokens") or [])

    def delete_token(self, token_id: str) -> None:
        self._request("DELETE", f"/_ember/tokens/{quote(token_id, safe='')}")
