"""Two accounts on one server: every object belongs to one account.

Names, lists, ARNs, layers, function URLs, per-account concurrency and
quotas, seen through real boto3 clients signed with each account's root key
(the default account's is in ``<data-dir>/credentials``; the second is made
with ``POST /_ember/accounts``), and per-caller rate limits keyed on the
authenticated principal.
"""

from __future__ import annotations

import configparser
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from conftest import ROLE, Server, make_zip

Spawn = Callable[..., Server]
REGION = "us-east-1"
DEFAULT = "000000000000"
# Small quotas, so that reaching them is cheap; each test has its own server.
MAX_FUNCTIONS = 4
CODE_STORAGE = 60_000

APP = """
import os

OWNER = {owner!r}

def handler(event, context):
    return {{
        "owner": OWNER,
        "name": os.environ["AWS_LAMBDA_FUNCTION_NAME"],
        "group": os.environ["AWS_LAMBDA_LOG_GROUP_NAME"],
        "arn": context.invoked_function_arn,
    }}
"""


@dataclass(frozen=True)
class Account:
    id: str
    key: str
    secret: str
    url: str

    def client(self) -> Any:
        return boto3.client(
            "lambda",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            config=Config(retries={"max_attempts": 0}, read_timeout=120, connect_timeout=5),
        )

    def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """An ember route (``/_ember/...``), SigV4-signed as boto3 would sign it."""
        data = b"" if body is None else json.dumps(body).encode()
        request = AWSRequest(
            method=method,
            url=self.url + path,
            data=data,
            headers={"content-type": "application/json"} if body is not None else {},
        )
        SigV4Auth(Credentials(self.key, self.secret), "lambda", REGION).add_auth(request)
        return httpx.request(
            method, self.url + path, content=data, headers=dict(request.headers), timeout=30
        )

    def function_arn(self, name: str) -> str:
        return f"arn:aws:lambda:{REGION}:{self.id}:function:{name}"


def default_root(server: Server) -> Account:
    """The default account's root, from the credentials file the first start wrote."""
    path = server.data_dir / "credentials"
    assert os.stat(path).st_mode & 0o077 == 0, "the credentials file is readable by others"
    parser = configparser.ConfigParser()
    parser.read(path)
    profile = parser["ember"]
    return Account(
        DEFAULT, profile["aws_access_key_id"], profile["aws_secret_access_key"], server.url
    )


def new_account(root: Account, name: str) -> Account:
    response = root.request("POST", "/_ember/accounts", {"Name": name})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["AccountId"] != DEFAULT and len(body["AccountId"]) == 12
    return Account(body["AccountId"], body["AccessKeyId"], body["SecretAccessKey"], root.url)


@pytest.fixture
def accounts(spawn_server: Spawn) -> tuple[Account, Account]:
    """(the default account's root, a second account's root) on a server of their own."""
    server = spawn_server(
        None,
        "--account-max-functions",
        str(MAX_FUNCTIONS),
        "--account-code-storage",
        str(CODE_STORAGE),
    )
    root = default_root(server)
    return root, new_account(root, "second")


def create(account: Account, name: str, **settings: Any) -> dict[str, Any]:
    code = settings.pop("Code", None) or {
        "ZipFile": make_zip({"app.py": APP.format(owner=account.id)})
    }
    params = {"Runtime": "python3.11", "Handler": "app.handler", "Role": ROLE, **settings}
    return dict(account.client().create_function(FunctionName=name, Code=code, **params))


def invoke(client: Any, name: str) -> dict[str, Any]:
    response = client.invoke(FunctionName=name, Payload=b"{}")
    body = response["Payload"].read()
    assert response["StatusCode"] == 200 and "FunctionError" not in response, body
    return dict(json.loads(body))


def error_code(call: Callable[[], Any]) -> tuple[str, str]:
    """(code, message) of the error ``call`` raises (it must raise one)."""
    try:
        call()
    except Exception as exc:  # botocore's ClientError subclasses, one per code
        error = exc.response["Error"]  # type: ignore[attr-defined]
        return str(error["Code"]), str(error["Message"])
    raise AssertionError("the call succeeded")


def test_each_account_has_its_own_function_of_the_same_name(
    accounts: tuple[Account, Account],
) -> None:
    first, second = accounts
    mine, theirs = create(first, "shared"), create(second, "shared")
    assert mine["FunctionName"] == theirs["FunctionName"] == "shared"
    assert mine["FunctionArn"] == first.function_arn("shared")
    assert theirs["FunctionArn"] == second.function_arn("shared")
    assert theirs["LoggingConfig"]["LogGroup"] == "/aws/lambda/shared"
    got = second.client().get_function(FunctionName="shared")["Configuration"]
    assert got["FunctionArn"] == second.function_arn("shared")
    # Each account's call runs its own code, and the sandbox sees the bare name.
    assert invoke(first.client(), "shared")["owner"] == first.id
    ran = invoke(second.client(), "shared")
    assert ran == {
        "owner": second.id,
        "name": "shared",
        "group": "/aws/lambda/shared",
        "arn": second.function_arn("shared"),
    }
    # Its full ARN names the same function as its bare name.
    assert invoke(second.client(), second.function_arn("shared"))["owner"] == second.id
    second.client().delete_function(FunctionName="shared")
    assert invoke(first.client(), "shared")["owner"] == first.id  # untouched


def test_listings_show_only_the_callers_objects(accounts: tuple[Account, Account]) -> None:
    first, second = accounts
    create(first, "only-first")
    create(second, "only-second", Publish=True)
    second.client().create_alias(FunctionName="only-second", Name="live", FunctionVersion="1")
    listed = [f["FunctionName"] for f in second.client().list_functions()["Functions"]]
    assert listed == ["only-second"]
    every = second.client().list_functions(FunctionVersion="ALL")["Functions"]
    assert {f["FunctionArn"] for f in every} == {
        second.function_arn("only-second:$LATEST"),
        second.function_arn("only-second:1"),
    }
    assert [f["FunctionName"] for f in first.client().list_functions()["Functions"]] == [
        "only-first"
    ]
    aliases = second.client().list_aliases(FunctionName="only-second")["Aliases"]
    assert [a["AliasArn"] for a in aliases] == [second.function_arn("only-second:live")]
    assert error_code(lambda: first.client().get_function(FunctionName="only-second"))[0] == (
        "ResourceNotFoundException"
    )
    limits = second.request("GET", "/_ember/limits").json()["Functions"]
    assert all(entry["FunctionName"] == "only-second" for entry in limits)


def test_another_accounts_function_by_arn_needs_its_permission(
    accounts: tuple[Account, Account],
) -> None:
    first, second = accounts
    create(first, "private")
    code, _ = error_code(
        lambda: second.client().invoke(FunctionName=first.function_arn("private"), Payload=b"{}")
    )
    assert code == "AccessDeniedException"


def test_layers_are_per_account_and_anothers_layer_is_refused(
    accounts: tuple[Account, Account],
) -> None:
    first, second = accounts
    content = {"ZipFile": make_zip({"python/helper.py": "X = 1\n"})}
    mine = first.client().publish_layer_version(LayerName="lib", Content=content)
    theirs = second.client().publish_layer_version(LayerName="lib", Content=content)
    assert mine["Version"] == theirs["Version"] == 1
    assert theirs["LayerVersionArn"] == f"arn:aws:lambda:{REGION}:{second.id}:layer:lib:1"
    layers = second.client().list_layers()["Layers"]
    assert [(layer["LayerName"], layer["LayerArn"]) for layer in layers] == [
        ("lib", f"arn:aws:lambda:{REGION}:{second.id}:layer:lib")
    ]
    own = create(second, "with-layer", Layers=[theirs["LayerVersionArn"]])
    assert [layer["Arn"] for layer in own["Layers"]] == [theirs["LayerVersionArn"]]
    code, message = error_code(
        lambda: create(second, "borrowing", Layers=[mine["LayerVersionArn"]])
    )
    assert code == "AccessDeniedException" and "GetLayerVersion" in message


def test_function_urls_of_each_account(accounts: tuple[Account, Account]) -> None:
    first, second = accounts
    create(first, "web")
    create(second, "web")
    mine = first.client().create_function_url_config(FunctionName="web", AuthType="NONE")
    theirs = second.client().create_function_url_config(FunctionName="web", AuthType="NONE")
    assert theirs["FunctionArn"] == second.function_arn("web")
    assert mine["FunctionUrl"] != theirs["FunctionUrl"]
    # The path-style URL of a bare name reaches the default account's function only.
    assert mine["FunctionUrl"] == f"{first.url}/url/web/"
    assert httpx.get(mine["FunctionUrl"], timeout=60).json()["owner"] == first.id
    assert httpx.get(theirs["FunctionUrl"], timeout=60).json()["owner"] == second.id


def test_each_account_has_its_own_concurrency_pool(accounts: tuple[Account, Account]) -> None:
    first, second = accounts
    create(first, "big")
    create(second, "big")
    # Each account may carve 900 of its own 1000 out: the other's pool is its own.
    for account in (first, second):
        account.client().put_function_concurrency(
            FunctionName="big", ReservedConcurrentExecutions=900
        )
    fresh = new_account(first, "third").client().get_account_settings()
    assert fresh["AccountLimit"]["UnreservedConcurrentExecutions"] == 1000
    for account in (first, second):
        settings = account.client().get_account_settings()
        assert settings["AccountLimit"]["ConcurrentExecutions"] == 1000
        assert settings["AccountLimit"]["UnreservedConcurrentExecutions"] == 100
        assert settings["AccountUsage"]["FunctionCount"] == 1


def test_quotas_are_per_account(accounts: tuple[Account, Account]) -> None:
    first, second = accounts
    for index in range(MAX_FUNCTIONS):
        create(second, f"f{index}")
    code, message = error_code(lambda: create(second, "one-too-many"))
    assert code == "InvalidParameterValueException" and str(MAX_FUNCTIONS) in message
    create(first, "still-fine")  # the default account's count is its own
    settings = second.client().get_account_settings()
    assert settings["AccountUsage"]["FunctionCount"] == MAX_FUNCTIONS
    assert settings["AccountLimit"]["TotalCodeSize"] == CODE_STORAGE
    # Random bytes do not compress: the package is as big as its content.
    large = {"ZipFile": make_zip({"app.py": "x = 1\n", "blob.txt": os.urandom(20_000).hex()})}
    create(first, "large", Code=large)
    code, _ = error_code(lambda: create(first, "larger", Code=large))
    assert code == "CodeStorageExceededException"
    used = first.client().get_account_settings()["AccountUsage"]["TotalCodeSize"]
    assert used <= CODE_STORAGE


def test_caller_rate_limits_key_on_the_principal(accounts: tuple[Account, Account]) -> None:
    first, _ = accounts
    create(first, "limited")
    response = first.request(
        "PUT",
        "/_ember/functions/limited/limits",
        {"scope": "caller", "algorithm": "fixed-window", "rate": "2/h"},
    )
    assert response.status_code == 200, response.text
    # A second key of the same principal (the root) shares its budget.
    made = first.request("POST", "/_ember/keys", {})
    assert made.status_code == 201, made.text
    again = Account(first.id, made.json()["AccessKeyId"], made.json()["SecretAccessKey"], first.url)
    for _ in range(2):
        invoke(first.client(), "limited")
    code, _ = error_code(lambda: invoke(again.client(), "limited"))
    assert code == "TooManyRequestsException"
    # Another principal of the account (a user allowed to invoke) has its own.
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "lambda:*", "Resource": "*"}],
    }
    user = first.request(
        "POST", "/_ember/keys", {"UserName": "alice", "Policy": json.dumps(policy)}
    )
    assert user.status_code == 201, user.text
    alice = Account(first.id, user.json()["AccessKeyId"], user.json()["SecretAccessKey"], first.url)
    assert invoke(alice.client(), "limited")["owner"] == first.id


def test_manifests_and_destinations_stay_in_their_account(
    accounts: tuple[Account, Account],
) -> None:
    first, second = accounts
    manifest = {
        "apiVersion": "ember.dev/v1",
        "kind": "Function",
        "metadata": {"name": "managed"},
        "spec": {
            "runtime": "python3.11",
            "handler": "app.handler",
            "code": {"inline": "def handler(event, context):\n    return 1\n"},
        },
    }
    path = "/_ember/apis/ember.dev/v1/namespaces/default/functions/managed"
    for account in (first, second):
        applied = account.request("PATCH", path, manifest)
        assert applied.status_code == 200, applied.text
        assert applied.json()["object"]["metadata"]["name"] == "managed"
    listed = second.request("GET", "/_ember/apis/ember.dev/v1/functions").json()["items"]
    assert [item["metadata"]["name"] for item in listed] == ["managed"]
    # A destination must be a function of the same account.
    create(first, "target")
    create(second, "source")
    code, message = error_code(
        lambda: second.client().put_function_event_invoke_config(
            FunctionName="source",
            DestinationConfig={"OnSuccess": {"Destination": first.function_arn("target")}},
        )
    )
    assert code == "InvalidParameterValueException" and "own account" in message
    config = second.client().put_function_event_invoke_config(
        FunctionName="source", MaximumRetryAttempts=0
    )
    assert config["FunctionArn"] == second.function_arn("source:$LATEST")


def test_account_usage_counts_code_versions_and_layers_of_that_account(
    accounts: tuple[Account, Account],
) -> None:
    first, second = accounts
    function = create(first, "counted", Publish=True)  # $LATEST and version 1
    layer = first.client().publish_layer_version(
        LayerName="lib", Content={"ZipFile": make_zip({"python/lib.py": "X = 1\n" * 500})}
    )
    usage = first.client().get_account_settings()["AccountUsage"]
    assert usage == {
        "TotalCodeSize": 2 * function["CodeSize"] + layer["Content"]["CodeSize"],
        "FunctionCount": 1,
    }
    # Another account's code and layers are its own: none of them counts here.
    assert second.client().get_account_settings()["AccountUsage"] == {
        "TotalCodeSize": 0,
        "FunctionCount": 0,
    }
