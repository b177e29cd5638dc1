"""End-to-end throttling through boto3 against real servers (and a real Redis).

Concurrency as Lambda counts it (reserved concurrency, the 100-unreserved
rule, account settings, 429s with Reason and Retry-After, leases released on
every outcome) and ember's rate limits (per function, per caller, RateLimit-*
headers, surviving a restart, one limit enforced by two servers sharing Redis).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError
from e2e_helpers import new_caller

from conftest import EMBER, ROLE, Server, lambda_client, make_zip, wait_until
from ember.cli.credentials import Credentials

Deploy = Callable[..., dict[str, Any]]
Spawn = Callable[..., Server]

APP = """
import os, time

def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("crash"):
        os._exit(3)
    if event.get("fail"):
        raise RuntimeError("intentional")
    return {"ok": True}
"""


def call(aws: Any, name: str, **event: Any) -> dict[str, Any]:
    response = aws.invoke(FunctionName=name, Payload=json.dumps(event).encode())
    response["Body"] = response["Payload"].read()
    return dict(response)


def throttled(aws: Any, name: str, **event: Any) -> dict[str, Any] | None:
    """The 429's error response, or None if the call was admitted."""
    try:
        call(aws, name, **event)
    except aws.exceptions.TooManyRequestsException as exc:
        return dict(exc.response)
    return None


def call_admitted(aws: Any, name: str, **event: Any) -> dict[str, Any]:
    """Call until admitted: a concurrent probe may hold the lease for a moment."""

    def attempt() -> dict[str, Any] | None:
        try:
            return call(aws, name, **event)
        except aws.exceptions.TooManyRequestsException:
            return None

    result: dict[str, Any] = wait_until(attempt, timeout=30, interval=0.01)
    return result


def client_as(server: Server, user: str) -> Any:
    """A Lambda client signing with an access key of its own (per-caller limits key on it)."""
    return lambda_client(server, new_caller(server, user))


def set_limit(server: Server, name: str, **policy: Any) -> dict[str, Any]:
    response = server.http.put(f"/_ember/functions/{name}/limits", json=policy, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def headers(response: dict[str, Any]) -> dict[str, str]:
    return dict(response["ResponseMetadata"]["HTTPHeaders"])


# --- Lambda's concurrency API -----------------------------------------------------------


def test_reserved_concurrency_lifecycle(aws: Any, deploy: Deploy) -> None:
    name = deploy(APP)["FunctionName"]
    assert "ReservedConcurrentExecutions" not in aws.get_function_concurrency(FunctionName=name)
    put = aws.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    assert put["ReservedConcurrentExecutions"] == 5
    got = aws.get_function_concurrency(FunctionName=name)
    assert got["ReservedConcurrentExecutions"] == 5
    assert aws.get_function(FunctionName=name)["Concurrency"] == {"ReservedConcurrentExecutions": 5}
    deleted = aws.delete_function_concurrency(FunctionName=name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert "ReservedConcurrentExecutions" not in aws.get_function_concurrency(FunctionName=name)
    assert "Concurrency" not in aws.get_function(FunctionName=name)
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        aws.put_function_concurrency(FunctionName=name + "-nope", ReservedConcurrentExecutions=1)
    with pytest.raises(aws.exceptions.InvalidParameterValueException):
        aws.put_function_concurrency(FunctionName=name + ":1", ReservedConcurrentExecutions=1)


def test_at_least_100_stay_unreserved_and_account_settings_say_so(aws: Any, deploy: Deploy) -> None:
    first = deploy(APP)["FunctionName"]
    second = deploy(APP)["FunctionName"]
    before = aws.get_account_settings()
    assert before["AccountLimit"]["ConcurrentExecutions"] == 1000
    assert before["AccountUsage"]["FunctionCount"] >= 2
    unreserved = before["AccountLimit"]["UnreservedConcurrentExecutions"]
    aws.put_function_concurrency(FunctionName=first, ReservedConcurrentExecutions=unreserved - 150)
    with pytest.raises(aws.exceptions.InvalidParameterValueException) as refused:
        aws.put_function_concurrency(FunctionName=second, ReservedConcurrentExecutions=51)
    assert refused.value.response["message"] == (
        "Specified ReservedConcurrentExecutions for function decreases account's "
        "UnreservedConcurrentExecution below its minimum value of [100]."
    )
    aws.put_function_concurrency(FunctionName=second, ReservedConcurrentExecutions=50)
    assert aws.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 100
    aws.delete_function(FunctionName=first)  # a deleted function's reservation is returned
    after = aws.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    assert after == unreserved - 50


def test_reserved_zero_throttles_every_call(aws: Any, deploy: Deploy) -> None:
    name = deploy(APP)["FunctionName"]
    aws.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    error = throttled(aws, name)
    assert error is not None
    assert error["Error"]["Code"] == "TooManyRequestsException"
    assert error["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert error["message"] == "Rate Exceeded."
    assert error["Type"] == "User"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert int(error["ResponseMetadata"]["HTTPHeaders"]["retry-after"]) >= 1
    aws.delete_function_concurrency(FunctionName=name)
    assert call(aws, name)["StatusCode"] == 200


def test_reserved_one_admits_one_call_at_a_time(aws: Any, deploy: Deploy) -> None:
    name = deploy(APP, Timeout=30)["FunctionName"]
    aws.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(call_admitted, aws, name, sleep=4)
        # Once the slow call holds the only lease, a second call is refused.
        error = wait_until(lambda: throttled(aws, name), timeout=30, interval=0.02)
        assert error["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
        assert "retry-after" in error["ResponseMetadata"]["HTTPHeaders"]
        assert slow.result()["StatusCode"] == 200
    assert call(aws, name)["StatusCode"] == 200  # the lease came back


@pytest.mark.parametrize(
    ("event", "function_error"),
    [({"sleep": 5}, "Unhandled"), ({"crash": True}, "Unhandled"), ({"fail": True}, "Unhandled")],
    ids=["timeout", "crash", "error"],
)
def test_leases_come_back_after_every_failure(
    aws: Any, deploy: Deploy, event: dict[str, Any], function_error: str
) -> None:
    name = deploy(APP, Timeout=1)["FunctionName"]
    aws.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    for _ in range(3):
        failed = call(aws, name, **event)
        assert failed["FunctionError"] == function_error
    assert call(aws, name)["StatusCode"] == 200


def test_a_client_that_disconnects_gives_its_lease_back(server: Server, deploy: Deploy) -> None:
    aws = lambda_client(server)
    name = deploy(APP, Timeout=3)["FunctionName"]
    aws.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    impatient = lambda_client(server, read_timeout=0.5)
    with pytest.raises(ReadTimeoutError):
        impatient.invoke(FunctionName=name, Payload=b'{"sleep": 2}')
    # The abandoned call runs out and releases its lease: then calls pass again.
    wait_until(lambda: throttled(aws, name) is None, timeout=30, interval=0.1)


# --- rate limits ---------------------------------------------------------------------


def test_function_rate_limit_with_ratelimit_headers(
    server: Server, aws: Any, deploy: Deploy
) -> None:
    name = deploy(APP)["FunctionName"]
    plain = call(aws, name)
    assert "ratelimit-limit" not in headers(plain)
    shown = set_limit(server, name, algorithm="token-bucket", rate="1/h", burst=2)
    assert shown["RateLimits"] == [
        {
            "scope": "function",
            "algorithm": "token-bucket",
            "rate": "1/h",
            "limit": 1,
            "period": 3600.0,
            "burst": 2,
        }
    ]
    first, second = call(aws, name), call(aws, name)
    assert headers(first)["ratelimit-limit"] == "2"
    assert [headers(r)["ratelimit-remaining"] for r in (first, second)] == ["1", "0"]
    assert int(headers(second)["ratelimit-reset"]) > 3600  # two tokens to refill at 1/h
    error = throttled(client_as(server, "someone-else"), name)
    assert error is not None
    assert error["Reason"] == "FunctionInvocationRateLimitExceeded"
    assert 3000 < int(error["ResponseMetadata"]["HTTPHeaders"]["retry-after"]) <= 3600
    assert server.http.delete(f"/_ember/functions/{name}/limits").status_code == 204
    assert call(aws, name)["StatusCode"] == 200


def test_a_claimed_access_key_does_not_escape_the_caller_limit(spawn_server: Spawn) -> None:
    """Callers are verified principals (test_accounts.py), never the key id a request
    claims: with ``--auth none`` nothing is verified, so keys made up by the client do
    not split the budget (one client address is one caller)."""
    server = spawn_server(None, "--auth", "none")
    root = lambda_client(server)
    name = "claimed-keys"
    root.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": APP})},
    )
    set_limit(server, name, scope="caller", algorithm="fixed-window", rate="2/h")
    alice = lambda_client(
        server, Credentials("AKIACLAIMEDALICE0001", "x" * 40, None, "us-east-1", "test")
    )
    bob = lambda_client(
        server, Credentials("AKIACLAIMEDBOB000001", "x" * 40, None, "us-east-1", "test")
    )
    assert [headers(call(alice, name))["ratelimit-remaining"] for _ in range(2)] == ["1", "0"]
    error = throttled(bob, name)
    assert error is not None and error["Reason"] == "CallerRateLimitExceeded"


@pytest.mark.parametrize(
    "algorithm", ["fixed-window", "sliding-log", "sliding-window", "leaky-bucket"]
)
def test_every_algorithm_throttles_through_the_api(
    server: Server, aws: Any, deploy: Deploy, algorithm: str
) -> None:
    name = deploy(APP)["FunctionName"]
    set_limit(server, name, algorithm=algorithm, rate="2/h")
    assert [call(aws, name)["StatusCode"] for _ in range(2)] == [200, 200]
    error = throttled(aws, name)
    assert error is not None and error["Reason"] == "FunctionInvocationRateLimitExceeded"


def test_bad_policies_are_refused_by_name(server: Server, deploy: Deploy) -> None:
    name = deploy(APP)["FunctionName"]
    url = f"/_ember/functions/{name}/limits"
    for body, word in [
        ({"algorithm": "magic", "rate": "1/s"}, "magic"),
        ({"rate": "lots"}, "lots"),
        ({"algorithm": "fixed-window", "rate": "5/s", "burst": 3}, "burst"),
        ({"scope": "everyone", "rate": "5/s"}, "everyone"),
    ]:
        response = server.http.put(url, json=body, timeout=10)
        assert response.status_code == 400
        assert word in response.json()["message"]
    missing = server.http.put(f"/_ember/functions/nope-{name}/limits", json={"rate": "1/s"})
    assert missing.status_code == 404


def test_limit_cli_sets_lists_and_removes(server: Server, deploy: Deploy) -> None:
    name = deploy(APP)["FunctionName"]
    env = server.cli_env(COLUMNS="200")

    def ember(*args: str) -> str:
        done = subprocess.run([EMBER, *args], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    ember("limit", "set", name, "--algorithm", "token-bucket", "--rate", "100/s", "--burst", "20")
    ember("limit", "set", name, "--algorithm", "sliding-log", "--rate", "10/m", "--scope", "caller")
    listed = json.loads(ember("limit", "ls", name, "--json"))
    assert [(p["scope"], p["algorithm"], p["rate"]) for p in listed[0]["RateLimits"]] == [
        ("function", "token-bucket", "100/s"),
        ("caller", "sliding-log", "10/m"),
    ]
    assert name in ember("limit", "ls")
    ember("limit", "rm", name, "--scope", "caller")
    listed = json.loads(ember("limit", "ls", name, "--json"))
    assert [p["scope"] for p in listed[0]["RateLimits"]] == ["function"]
    ember("limit", "rm", name)
    assert "RateLimits" not in json.loads(ember("limit", "ls", name, "--json"))[0]


# --- durability, deletion, and Redis --------------------------------------------------


def test_limits_survive_a_restart_and_die_with_their_function(
    spawn_server: Spawn, unique_name: str
) -> None:
    first = spawn_server()
    aws = lambda_client(first)
    aws.create_function(
        FunctionName=unique_name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": APP})},
    )
    aws.put_function_concurrency(FunctionName=unique_name, ReservedConcurrentExecutions=7)
    set_limit(first, unique_name, algorithm="fixed-window", rate="1/h")
    call(aws, unique_name)
    assert first.stop() == 0

    second = spawn_server(first.data_dir)
    aws = lambda_client(second)
    assert (
        aws.get_function_concurrency(FunctionName=unique_name)["ReservedConcurrentExecutions"] == 7
    )
    limits = second.http.get(f"/_ember/functions/{unique_name}/limits").json()
    assert limits["RateLimits"][0]["algorithm"] == "fixed-window"
    assert call(aws, unique_name)["StatusCode"] == 200  # counters are not durable: a fresh hour
    assert throttled(aws, unique_name)["Reason"] == "FunctionInvocationRateLimitExceeded"

    aws.delete_function(FunctionName=unique_name)
    aws.create_function(
        FunctionName=unique_name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": APP})},
    )
    assert "ReservedConcurrentExecutions" not in aws.get_function_concurrency(
        FunctionName=unique_name
    )
    assert [call(aws, unique_name)["StatusCode"] for _ in range(3)] == [200, 200, 200]
    assert second.stop(signal.SIGTERM) == 0


def redis_url_or_skip() -> str:
    import redis

    url = os.environ.get("EMBER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {url} ({exc}); `make test` starts one")
    finally:
        client.close()
    return url


def test_two_servers_sharing_redis_enforce_one_limit(
    spawn_server: Spawn, tmp_path: Any, unique_name: str
) -> None:
    url = redis_url_or_skip()
    account = f"{random.randrange(10**11, 10**12)}"
    args = ("--throttle-backend", "redis", "--redis-url", url, "--account-id", account)
    servers = [spawn_server(tmp_path / f"data-{i}", *args) for i in range(2)]
    clients = [lambda_client(s) for s in servers]
    for server, aws in zip(servers, clients, strict=True):
        aws.create_function(
            FunctionName=unique_name,
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": make_zip({"app.py": APP})},
            Timeout=30,
        )
        set_limit(server, unique_name, algorithm="sliding-log", rate="5/h")

    def attempt(index: int) -> bool:
        return throttled(clients[index % 2], unique_name) is None

    with ThreadPoolExecutor(8) as pool:
        admitted = sum(pool.map(attempt, range(16)))
    assert admitted == 5

    # Reserved concurrency is shared too: a call on one server blocks the other.
    for server, aws in zip(servers, clients, strict=True):
        server.http.delete(f"/_ember/functions/{unique_name}/limits")
        aws.put_function_concurrency(FunctionName=unique_name, ReservedConcurrentExecutions=1)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(call_admitted, clients[0], unique_name, sleep=4)
        error = wait_until(lambda: throttled(clients[1], unique_name), timeout=30, interval=0.02)
        assert error["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
        assert slow.result()["StatusCode"] == 200
    assert call(clients[1], unique_name)["StatusCode"] == 200


def test_a_server_without_its_redis_refuses_to_start(spawn_server: Spawn) -> None:
    with pytest.raises(AssertionError, match=r"Redis at 127\.0\.0\.1:1 cannot be reached"):
        spawn_server(None, "--throttle-backend", "redis", "--redis-url", "redis://127.0.0.1:1/0")
