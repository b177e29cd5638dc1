"""The control plane through unmodified boto3: every call, response and error shape.

Expected values are those recorded from AWS (see the Lambda API reference
notes, sections 0 and 1): what a user of boto3 sees, not ember's internals.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError
from e2e_helpers import (
    ACCOUNT,
    LAST_MODIFIED,
    REQUEST_ID,
    code_sha256,
    echo_source,
    function_arn,
    invoke_json,
    request_id_of,
)

from conftest import ROLE, Server, make_zip

RUNTIME = "python3.11"
NOT_FOUND = "Function not found: {arn}"
STALE_REVISION = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
)


@pytest.fixture
def fresh_name(aws: Any, unique_name: str) -> Iterator[str]:
    """A name for a function the test creates itself; deleted afterwards if it exists."""
    yield unique_name
    with contextlib.suppress(aws.exceptions.ResourceNotFoundException):
        aws.delete_function(FunctionName=unique_name)


def create(aws: Any, name: str, package: bytes, **settings: Any) -> dict[str, Any]:
    params = {"Runtime": RUNTIME, "Handler": "app.handler", "Role": ROLE, **settings}
    return dict(aws.create_function(FunctionName=name, Code={"ZipFile": package}, **params))


def status_of(response: dict[str, Any]) -> int:
    return int(response["ResponseMetadata"]["HTTPStatusCode"])


def assert_error(error: ClientError, code: str, status: int, message: str | None = None) -> str:
    """Check what boto3 reports for a failed call; returns the message."""
    assert error.response["Error"]["Code"] == code
    assert status_of(error.response) == status
    request_id_of(error.response)
    text = str(error.response["Error"]["Message"])
    if message is not None:
        assert text == message
    return text


def assert_missing(aws: Any, name: str) -> None:
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        aws.get_function_configuration(FunctionName=name)


# --- CreateFunction ----------------------------------------------------------------------------


def test_create_returns_the_configuration_aws_returns(aws: Any, fresh_name: str) -> None:
    package = make_zip({"app.py": echo_source("v1")})
    response = create(
        aws, fresh_name, package, Environment={"Variables": {"GREETING": "hi"}}, Description="one"
    )

    assert status_of(response) == 201
    request_id_of(response)
    assert response["FunctionName"] == fresh_name
    assert response["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{fresh_name}"
    assert response["CodeSha256"] == code_sha256(package)
    assert response["CodeSize"] == len(package)
    assert response["State"] == "Active"
    assert response["LastUpdateStatus"] == "Successful"
    assert response["Version"] == "$LATEST"
    assert response["Timeout"] == 3
    assert response["MemorySize"] == 128
    assert response["Environment"] == {"Variables": {"GREETING": "hi"}}
    assert response["Runtime"] == RUNTIME
    assert response["Handler"] == "app.handler"
    assert response["Role"] == ROLE
    assert response["Description"] == "one"
    assert response["PackageType"] == "Zip"
    assert response["Architectures"] == ["x86_64"]
    assert LAST_MODIFIED.match(response["LastModified"]), response["LastModified"]
    assert uuid.UUID(response["RevisionId"])
    assert invoke_json(aws, fresh_name, {"n": 1}) == {
        "version": "v1",
        "env": "hi",
        "event": {"n": 1},
    }


def test_environment_is_absent_when_never_set(aws: Any, deploy: Any) -> None:
    created = deploy(echo_source("v1"))
    name = created["FunctionName"]

    assert "Environment" not in created
    assert "Environment" not in aws.get_function_configuration(FunctionName=name)
    assert "Environment" not in aws.get_function(FunctionName=name)["Configuration"]


def test_create_keeps_explicit_settings(aws: Any, deploy: Any) -> None:
    created = deploy(echo_source("v1"), Timeout=30, MemorySize=256, Description="tuned")

    fetched = aws.get_function_configuration(FunctionName=created["FunctionName"])
    for config in (created, fetched):
        assert (config["Timeout"], config["MemorySize"], config["Description"]) == (
            30,
            256,
            "tuned",
        )


def test_every_response_carries_its_own_request_id(aws: Any, deploy: Any) -> None:
    name = deploy(echo_source("v1"))["FunctionName"]

    ids = {request_id_of(aws.get_function(FunctionName=name)) for _ in range(3)}
    assert len(ids) == 3


# --- GetFunction / GetFunctionConfiguration ----------------------------------------------------

SPELLINGS = {
    "name": lambda name: ({"FunctionName": name}),
    "full-arn": lambda name: ({"FunctionName": function_arn(name)}),
    "partial-arn": lambda name: ({"FunctionName": f"{ACCOUNT}:function:{name}"}),
    "name-latest": lambda name: ({"FunctionName": f"{name}:$LATEST"}),
    "arn-latest": lambda name: ({"FunctionName": f"{function_arn(name)}:$LATEST"}),
    "qualifier-latest": lambda name: ({"FunctionName": name, "Qualifier": "$LATEST"}),
}


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_get_by_every_spelling_of_the_name(aws: Any, deploy: Any, spelling: str) -> None:
    created = deploy(echo_source("v1"))
    name = created["FunctionName"]
    params = SPELLINGS[spelling](name)

    function = aws.get_function(**params)
    configuration = aws.get_function_configuration(**params)

    assert status_of(function) == status_of(configuration) == 200
    request_id_of(function)
    request_id_of(configuration)
    # Lambda qualifies the ARN when the caller named a qualifier, $LATEST included.
    qualified = "latest" in spelling
    for config in (function["Configuration"], configuration):
        assert config["FunctionName"] == name
        assert config["FunctionArn"] == function_arn(name) + (":$LATEST" if qualified else "")
        assert config["Version"] == "$LATEST"
        assert config["CodeSha256"] == created["CodeSha256"]
        assert config["RevisionId"] == created["RevisionId"]
        assert config["LastModified"] == created["LastModified"]


@pytest.mark.parametrize(
    ("suffix", "qualifier"), [("", "1"), ("", "live"), (":7", None), (":live", None)]
)
def test_unknown_qualifier_is_not_found(
    aws: Any, deploy: Any, suffix: str, qualifier: str | None
) -> None:
    name = deploy(echo_source("v1"))["FunctionName"]
    params: dict[str, str] = {"FunctionName": name + suffix}
    if qualifier:
        params["Qualifier"] = qualifier
    missing = function_arn(name) + ":" + (qualifier or suffix[1:])

    for call in (aws.get_function, aws.get_function_configuration):
        with pytest.raises(aws.exceptions.ResourceNotFoundException) as caught:
            call(**params)
        assert_error(caught.value, "ResourceNotFoundException", 404, NOT_FOUND.format(arn=missing))


def test_qualifier_that_contradicts_the_name_is_refused(aws: Any, deploy: Any) -> None:
    name = deploy(echo_source("v1"))["FunctionName"]

    with pytest.raises(aws.exceptions.InvalidParameterValueException) as caught:
        aws.get_function(FunctionName=f"{name}:$LATEST", Qualifier="1")

    assert_error(
        caught.value,
        "InvalidParameterValueException",
        400,
        "The derived qualifier from the function name does not match the specified qualifier.",
    )


def test_get_function_code_location_downloads_the_package(
    server: Server, aws: Any, fresh_name: str
) -> None:
    package = make_zip({"app.py": echo_source("v1"), "data/notes.txt": "kept\n"})
    create(aws, fresh_name, package)

    code = aws.get_function(FunctionName=fresh_name)["Code"]

    assert code["RepositoryType"] == "S3"
    download = server.http.get(code["Location"], timeout=30)
    assert download.status_code == 200
    assert download.content == package


def test_get_function_and_configuration_agree(aws: Any, deploy: Any) -> None:
    name = deploy(echo_source("v1"), Environment={"Variables": {"GREETING": "x"}})["FunctionName"]

    function = aws.get_function(FunctionName=name)
    configuration = aws.get_function_configuration(FunctionName=name)

    configuration.pop("ResponseMetadata")
    assert function["Configuration"] == configuration


# --- ListFunctions -----------------------------------------------------------------------------

LISTED = 57


@pytest.fixture(scope="module")
def listed(aws: Any) -> Iterator[list[str]]:
    """More functions than one page holds; one shared package keeps them cheap."""
    package = make_zip({"app.py": echo_source("listed")})
    prefix = f"listed-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-{index:02d}" for index in range(LISTED)]
    created = []
    try:
        for name in names:
            create(aws, name, package)
            created.append(name)
        yield names
    finally:
        for name in created:
            with contextlib.suppress(aws.exceptions.ResourceNotFoundException):
                aws.delete_function(FunctionName=name)


def walk_pages(aws: Any, **params: Any) -> list[dict[str, Any]]:
    """Follow NextMarker by hand, as a user without the paginator does."""
    pages = []
    marker = None
    while True:
        page = aws.list_functions(**params, **({"Marker": marker} if marker else {}))
        assert status_of(page) == 200
        request_id_of(page)
        pages.append(page)
        marker = page.get("NextMarker")
        if not marker:
            return pages
        assert len(pages) < 100, "NextMarker never ran out"


def test_list_pages_hold_at_most_fifty(aws: Any, listed: list[str]) -> None:
    pages = walk_pages(aws)

    assert len(pages) >= 2
    assert len(pages[0]["Functions"]) == 50
    assert all(len(page["Functions"]) <= 50 for page in pages)
    assert "NextMarker" not in pages[-1]
    names = [f["FunctionName"] for page in pages for f in page["Functions"]]
    assert len(names) == len(set(names))
    assert set(listed) <= set(names)


def test_list_max_items_limits_a_page_and_markers_continue(aws: Any, listed: list[str]) -> None:
    pages = walk_pages(aws, MaxItems=7)

    assert all(len(page["Functions"]) == 7 for page in pages[:-1])
    assert 1 <= len(pages[-1]["Functions"]) <= 7
    names = [f["FunctionName"] for page in pages for f in page["Functions"]]
    assert len(names) == len(set(names))
    assert set(listed) <= set(names)


def test_list_max_items_above_fifty_still_gives_fifty(aws: Any, listed: list[str]) -> None:
    page = aws.list_functions(MaxItems=1000)

    assert len(page["Functions"]) == 50
    assert page["NextMarker"]


@pytest.mark.parametrize("page_size", [None, 10])
def test_paginator_returns_every_function_exactly_once(
    aws: Any, listed: list[str], page_size: int | None
) -> None:
    config = {"PageSize": page_size} if page_size else {}
    pages = list(aws.get_paginator("list_functions").paginate(PaginationConfig=config))

    counts = collections.Counter(f["FunctionName"] for page in pages for f in page["Functions"])
    assert all(count == 1 for count in counts.values()), counts.most_common(3)
    assert set(listed) <= set(counts)
    if page_size:
        assert all(len(page["Functions"]) <= page_size for page in pages)


def test_listed_configuration_matches_get(aws: Any, listed: list[str]) -> None:
    everything = {
        f["FunctionName"]: f
        for page in aws.get_paginator("list_functions").paginate()
        for f in page["Functions"]
    }
    fetched = aws.get_function_configuration(FunctionName=listed[0])

    fetched.pop("ResponseMetadata")
    assert everything[listed[0]] == fetched
    assert "Environment" not in everything[listed[0]]


def test_list_function_version_all_is_accepted(aws: Any, listed: list[str]) -> None:
    pages = walk_pages(aws, FunctionVersion="ALL")

    names = {f["FunctionName"] for page in pages for f in page["Functions"]}
    assert set(listed) <= names


def test_list_other_function_version_is_a_validation_error(aws: Any) -> None:
    with pytest.raises(ClientError) as caught:
        aws.list_functions(FunctionVersion="LATEST")

    message = assert_error(caught.value, "ValidationException", 400)
    assert "'LATEST' at 'functionVersion'" in message


# --- UpdateFunctionCode ------------------------------------------------------------------------


def test_update_code_changes_sha_and_runs_the_new_code(
    server: Server, aws: Any, fresh_name: str
) -> None:
    first = make_zip({"app.py": echo_source("v1")})
    second = make_zip({"app.py": echo_source("v2"), "padding.txt": "x" * 100})
    created = create(aws, fresh_name, first)
    assert invoke_json(aws, fresh_name)["version"] == "v1"

    updated = aws.update_function_code(FunctionName=fresh_name, ZipFile=second)

    assert status_of(updated) == 200
    request_id_of(updated)
    assert updated["CodeSha256"] == code_sha256(second) != created["CodeSha256"]
    assert updated["CodeSize"] == len(second)
    assert updated["RevisionId"] != created["RevisionId"]
    assert LAST_MODIFIED.match(updated["LastModified"])
    assert updated["LastUpdateStatus"] == "Successful"
    assert invoke_json(aws, fresh_name)["version"] == "v2"
    location = aws.get_function(FunctionName=fresh_name)["Code"]["Location"]
    assert server.http.get(location, timeout=30).content == second


def test_update_code_honours_revision_id(aws: Any, fresh_name: str) -> None:
    created = create(aws, fresh_name, make_zip({"app.py": echo_source("v1")}))
    second = make_zip({"app.py": echo_source("v2")})

    updated = aws.update_function_code(
        FunctionName=fresh_name, ZipFile=second, RevisionId=created["RevisionId"]
    )
    with pytest.raises(aws.exceptions.PreconditionFailedException) as caught:
        aws.update_function_code(
            FunctionName=fresh_name,
            ZipFile=make_zip({"app.py": echo_source("v3")}),
            RevisionId=created["RevisionId"],
        )

    assert_error(caught.value, "PreconditionFailedException", 412, STALE_REVISION)
    current = aws.get_function_configuration(FunctionName=fresh_name)
    assert current["CodeSha256"] == updated["CodeSha256"] == code_sha256(second)
    assert invoke_json(aws, fresh_name)["version"] == "v2"


def test_update_code_rejects_a_non_zip(aws: Any, deploy: Any) -> None:
    created = deploy(echo_source("v1"))

    with pytest.raises(aws.exceptions.InvalidParameterValueException) as caught:
        aws.update_function_code(FunctionName=created["FunctionName"], ZipFile=b"not a zip")

    message = assert_error(caught.value, "InvalidParameterValueException", 400)
    assert message.startswith("Could not unzip uploaded file")
    current = aws.get_function_configuration(FunctionName=created["FunctionName"])
    assert current["CodeSha256"] == created["CodeSha256"]


# --- UpdateFunctionConfiguration ---------------------------------------------------------------

TWO_HANDLERS = (
    echo_source("v1")
    + """
def other(event, context):
    return {"handler": "other", "env": os.environ.get("GREETING"),
            "memory": context.memory_limit_in_mb}
"""
)


def test_update_configuration_changes_what_invoke_sees(aws: Any, deploy: Any) -> None:
    created = deploy(TWO_HANDLERS, Environment={"Variables": {"GREETING": "before"}})
    name = created["FunctionName"]
    assert invoke_json(aws, name)["env"] == "before"

    updated = aws.update_function_configuration(
        FunctionName=name,
        Description="described",
        Environment={"Variables": {"GREETING": "after"}},
        MemorySize=256,
        Timeout=10,
        Handler="app.other",
    )

    assert status_of(updated) == 200
    request_id_of(updated)
    assert updated["Description"] == "described"
    assert updated["Environment"] == {"Variables": {"GREETING": "after"}}
    assert (updated["MemorySize"], updated["Timeout"], updated["Handler"]) == (256, 10, "app.other")
    assert updated["RevisionId"] != created["RevisionId"]
    assert updated["CodeSha256"] == created["CodeSha256"]
    assert updated["LastUpdateStatus"] == "Successful"
    assert LAST_MODIFIED.match(updated["LastModified"])
    fetched = aws.get_function_configuration(FunctionName=name)
    fetched.pop("ResponseMetadata")
    updated.pop("ResponseMetadata")
    assert fetched == updated
    assert invoke_json(aws, name) == {"handler": "other", "env": "after", "memory": "256"}


def test_update_configuration_keeps_unmentioned_settings(aws: Any, deploy: Any) -> None:
    created = deploy(echo_source("v1"), Environment={"Variables": {"GREETING": "kept"}}, Timeout=20)
    name = created["FunctionName"]

    updated = aws.update_function_configuration(FunctionName=name, Description="only this")

    assert updated["Description"] == "only this"
    assert updated["Environment"] == {"Variables": {"GREETING": "kept"}}
    assert (updated["Timeout"], updated["MemorySize"]) == (20, 128)
    assert invoke_json(aws, name)["env"] == "kept"


def test_every_update_changes_the_revision_id(aws: Any, deploy: Any) -> None:
    created = deploy(echo_source("v1"))
    name = created["FunctionName"]
    revisions = [created["RevisionId"]]

    for timeout in (5, 6, 7):
        revisions.append(
            aws.update_function_configuration(FunctionName=name, Timeout=timeout)["RevisionId"]
        )

    assert len(set(revisions)) == len(revisions)


def test_update_configuration_with_a_stale_revision_id_fails(aws: Any, deploy: Any) -> None:
    created = deploy(echo_source("v1"))
    name = created["FunctionName"]
    current = aws.update_function_configuration(
        FunctionName=name, Description="first", RevisionId=created["RevisionId"]
    )

    with pytest.raises(aws.exceptions.PreconditionFailedException) as caught:
        aws.update_function_configuration(
            FunctionName=name, Description="second", RevisionId=created["RevisionId"]
        )

    assert_error(caught.value, "PreconditionFailedException", 412, STALE_REVISION)
    after = aws.get_function_configuration(FunctionName=name)
    assert after["Description"] == "first"
    assert after["RevisionId"] == current["RevisionId"]


@pytest.mark.parametrize(
    ("settings", "code", "fragment"),
    [
        ({"Timeout": 901}, "ValidationException", "less than or equal to 900"),
        ({"MemorySize": 99999}, "ValidationException", "less than or equal to 10240"),
        ({"Role": "r1"}, "ValidationException", "Value 'r1' at 'role'"),
        ({"Runtime": "python2.7"}, "InvalidParameterValueException", "python2.7"),
        ({"Handler": "nodot"}, "InvalidParameterValueException", "nodot"),
        (
            {"Environment": {"Variables": {"AWS_REGION": "eu-west-1"}}},
            "InvalidParameterValueException",
            "reserved keys",
        ),
    ],
    ids=["timeout", "memory", "role", "runtime", "handler", "reserved-env"],
)
def test_update_configuration_validates(
    aws: Any, deploy: Any, settings: dict[str, Any], code: str, fragment: str
) -> None:
    created = deploy(echo_source("v1"))
    name = created["FunctionName"]

    with pytest.raises(ClientError) as caught:
        aws.update_function_configuration(FunctionName=name, **settings)

    assert fragment in assert_error(caught.value, code, 400)
    after = aws.get_function_configuration(FunctionName=name)
    assert after["RevisionId"] == created["RevisionId"]


def test_updates_of_a_missing_function_are_not_found(aws: Any, unique_name: str) -> None:
    message = NOT_FOUND.format(arn=function_arn(unique_name))

    with pytest.raises(aws.exceptions.ResourceNotFoundException) as caught:
        aws.update_function_configuration(FunctionName=unique_name, Timeout=5)
    assert_error(caught.value, "ResourceNotFoundException", 404, message)
    with pytest.raises(aws.exceptions.ResourceNotFoundException) as caught:
        aws.update_function_code(
            FunctionName=unique_name, ZipFile=make_zip({"app.py": echo_source("v1")})
        )
    assert_error(caught.value, "ResourceNotFoundException", 404, message)


# --- DeleteFunction ----------------------------------------------------------------------------


def test_delete_returns_204_and_the_function_is_gone(
    aws: Any, server: Server, fresh_name: str
) -> None:
    create(aws, fresh_name, make_zip({"app.py": echo_source("v1")}))
    message = NOT_FOUND.format(arn=f"arn:aws:lambda:us-east-1:000000000000:function:{fresh_name}")

    deleted = aws.delete_function(FunctionName=fresh_name)

    assert status_of(deleted) == deleted["StatusCode"] == 204
    request_id_of(deleted)
    with pytest.raises(aws.exceptions.ResourceNotFoundException) as caught:
        aws.get_function(FunctionName=fresh_name)
    assert_error(caught.value, "ResourceNotFoundException", 404, message)
    with pytest.raises(aws.exceptions.ResourceNotFoundException) as caught:
        aws.get_function_configuration(FunctionName=fresh_name)
    assert_error(caught.value, "ResourceNotFoundException", 404, message)
    with pytest.raises(aws.exceptions.ResourceNotFoundException) as caught:
        aws.delete_function(FunctionName=fresh_name)
    assert_error(caught.value, "ResourceNotFoundException", 404, message)
    with pytest.raises(aws.exceptions.ResourceNotFoundException) as caught:
        aws.invoke(FunctionName=fresh_name, Payload=b"{}")
    assert assert_error(caught.value, "ResourceNotFoundException", 404).startswith(message)
    names = {
        f["FunctionName"]
        for page in aws.get_paginator("list_functions").paginate()
        for f in page["Functions"]
    }
    assert fresh_name not in names

    # The wire shape itself: capital "Message", and the code in x-amzn-ErrorType.
    raw = server.http.get(f"/2015-03-31/functions/{fresh_name}", timeout=10)
    assert raw.status_code == 404
    assert raw.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert REQUEST_ID.match(raw.headers["x-amzn-RequestId"])
    assert raw.json() == {"Type": "User", "Message": message}


def test_delete_by_arn(aws: Any, fresh_name: str) -> None:
    create(aws, fresh_name, make_zip({"app.py": echo_source("v1")}))

    assert status_of(aws.delete_function(FunctionName=function_arn(fresh_name))) == 204

    assert_missing(aws, fresh_name)


def test_delete_latest_alone_is_refused(aws: Any, deploy: Any) -> None:
    name = deploy(echo_source("v1"))["FunctionName"]

    with pytest.raises(aws.exceptions.InvalidParameterValueException) as caught:
        aws.delete_function(FunctionName=name, Qualifier="$LATEST")

    assert_error(
        caught.value,
        "InvalidParameterValueException",
        400,
        "$LATEST version cannot be deleted without deleting the function.",
    )
    assert aws.get_function_configuration(FunctionName=name)["FunctionName"] == name


def test_delete_unknown_version_succeeds_and_keeps_the_function(aws: Any, deploy: Any) -> None:
    """Lambda answers 204 for a version that is not there (AWS-validated behaviour)."""
    name = deploy(echo_source("v1"))["FunctionName"]

    assert status_of(aws.delete_function(FunctionName=name, Qualifier="3")) == 204

    assert aws.get_function_configuration(FunctionName=name)["FunctionName"] == name
    with pytest.raises(aws.exceptions.ResourceNotFoundException) as caught:
        aws.delete_function(FunctionName=name + "-nope", Qualifier="3")
    assert_error(
        caught.value,
        "ResourceNotFoundException",
        404,
        NOT_FOUND.format(arn=function_arn(name + "-nope")),
    )


def test_recreate_after_delete(aws: Any, fresh_name: str) -> None:
    create(aws, fresh_name, make_zip({"app.py": echo_source("v1")}))
    assert invoke_json(aws, fresh_name)["version"] == "v1"
    aws.delete_function(FunctionName=fresh_name)

    again = create(aws, fresh_name, make_zip({"app.py": echo_source("v2")}))

    assert status_of(again) == 201
    assert invoke_json(aws, fresh_name)["version"] == "v2"


# --- Concurrency of writes -------------------------------------------------------------------


def test_concurrent_creates_of_one_name_make_exactly_one_function(
    aws: Any, fresh_name: str
) -> None:
    packages = [make_zip({"app.py": echo_source(f"v{index}")}) for index in range(8)]

    def attempt(package: bytes) -> str:
        try:
            return str(create(aws, fresh_name, package)["CodeSha256"])
        except aws.exceptions.ResourceConflictException:
            return "conflict"

    with ThreadPoolExecutor(len(packages)) as pool:
        outcomes = list(pool.map(attempt, packages))

    winners = [outcome for outcome in outcomes if outcome != "conflict"]
    assert len(winners) == 1, outcomes
    current = aws.get_function_configuration(FunctionName=fresh_name)
    assert current["CodeSha256"] == winners[0]
    assert invoke_json(aws, fresh_name)["version"] == f"v{outcomes.index(winners[0])}"


def test_concurrent_updates_with_one_revision_id_let_exactly_one_win(aws: Any, deploy: Any) -> None:
    created = deploy(echo_source("v1"))
    name = created["FunctionName"]

    def attempt(index: int) -> str:
        try:
            aws.update_function_configuration(
                FunctionName=name, Description=f"writer {index}", RevisionId=created["RevisionId"]
            )
            return f"writer {index}"
        except aws.exceptions.PreconditionFailedException:
            return "stale"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))

    winners = [outcome for outcome in outcomes if outcome != "stale"]
    assert len(winners) == 1, outcomes
    assert aws.get_function_configuration(FunctionName=name)["Description"] == winners[0]


# --- CreateFunction errors ---------------------------------------------------------------------


def test_duplicate_create_conflicts(aws: Any, server: Server, fresh_name: str) -> None:
    package = make_zip({"app.py": echo_source("v1")})
    created = create(aws, fresh_name, package)

    with pytest.raises(aws.exceptions.ResourceConflictException) as caught:
        create(aws, fresh_name, make_zip({"app.py": echo_source("v2")}), Timeout=9)

    assert_error(
        caught.value, "ResourceConflictException", 409, f"Function already exist: {fresh_name}"
    )
    current = aws.get_function_configuration(FunctionName=fresh_name)
    assert (current["CodeSha256"], current["Timeout"]) == (created["CodeSha256"], 3)

    # On the wire: lowercase "message" for every error but the not-found one.
    raw = server.http.post(
        "/2015-03-31/functions",
        json={
            "FunctionName": fresh_name,
            "Runtime": RUNTIME,
            "Handler": "app.handler",
            "Role": ROLE,
            "Code": {"ZipFile": base64.b64encode(package).decode()},
        },
        timeout=10,
    )
    assert raw.status_code == 409
    assert raw.headers["x-amzn-ErrorType"] == "ResourceConflictException"
    assert REQUEST_ID.match(raw.headers["x-amzn-RequestId"])
    assert raw.json() == {"Type": "User", "message": f"Function already exist: {fresh_name}"}


INVALID_CREATES = [
    pytest.param(
        {"Runtime": "python2.7"}, "InvalidParameterValueException", "python2.7", id="runtime"
    ),
    pytest.param(
        {"Runtime": "PYTHON3.11"}, "InvalidParameterValueException", "PYTHON3.11", id="runtime-case"
    ),
    pytest.param({"Handler": "nodot"}, "InvalidParameterValueException", "nodot", id="handler"),
    pytest.param(
        {"Handler": "app.my handler"},
        "InvalidParameterValueException",
        "app.my handler",
        id="handler-space",
    ),
    pytest.param(
        {"Code": {"ZipFile": b"this is not a zip file"}},
        "InvalidParameterValueException",
        "Could not unzip uploaded file. Please check your file, then try to upload again.",
        id="not-a-zip",
    ),
    pytest.param(
        {"Timeout": 901},
        "ValidationException",
        "1 validation error detected: Value '901' at 'timeout' failed to satisfy constraint: "
        "Member must have value less than or equal to 900",
        id="timeout",
    ),
    pytest.param(
        {"MemorySize": 99999},
        "ValidationException",
        "1 validation error detected: Value '99999' at 'memorySize' failed to satisfy "
        "constraint: Member must have value less than or equal to 10240",
        id="memory",
    ),
    pytest.param(
        {"Role": "r1"},
        "ValidationException",
        "1 validation error detected: Value 'r1' at 'role' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern",
        id="role",
    ),
    pytest.param(
        {"Architectures": ["x86_64", "arm64"]},
        "ValidationException",
        "at 'architectures'",
        id="two-architectures",
    ),
    pytest.param(
        {"Environment": {"Variables": {"BIG": "x" * 4100}}},
        "InvalidParameterValueException",
        "exceeded the 4KB limit",
        id="env-too-big",
    ),
    pytest.param(
        {"Environment": {"Variables": {"AWS_REGION": "eu-west-1", "OK": "1"}}},
        "InvalidParameterValueException",
        "Reserved keys used in this request: AWS_REGION",
        id="env-reserved",
    ),
]


@pytest.mark.parametrize(("settings", "code", "fragment"), INVALID_CREATES)
def test_invalid_create_is_refused(
    aws: Any, fresh_name: str, settings: dict[str, Any], code: str, fragment: str
) -> None:
    params: dict[str, Any] = {
        "FunctionName": fresh_name,
        "Runtime": RUNTIME,
        "Handler": "app.handler",
        "Role": ROLE,
        "Code": {"ZipFile": make_zip({"app.py": echo_source("v1")})},
        **settings,
    }

    with pytest.raises(ClientError) as caught:
        aws.create_function(**params)

    assert fragment in assert_error(caught.value, code, 400)
    if code != "ValidationException":
        # Modeled errors get their own class, so `except aws.exceptions.X` works.
        assert isinstance(caught.value, getattr(aws.exceptions, code))
    assert_missing(aws, fresh_name)


@pytest.mark.parametrize("name", ["bad name", "bad!name", "x" * 65, "a:b:c:d"])
def test_invalid_function_name_is_a_validation_error(aws: Any, name: str) -> None:
    with pytest.raises(ClientError) as caught:
        create(aws, name, make_zip({"app.py": echo_source("v1")}))

    assert "at 'functionName'" in assert_error(caught.value, "ValidationException", 400)


def test_invalid_name_in_the_path_is_a_validation_error(aws: Any) -> None:
    with pytest.raises(ClientError) as caught:
        aws.get_function(FunctionName="bad name!")

    assert "at 'functionName'" in assert_error(caught.value, "ValidationException", 400)


def test_validation_error_body_has_only_a_message(server: Server) -> None:
    raw = server.http.get("/2015-03-31/functions?FunctionVersion=LATEST", timeout=10)

    assert raw.status_code == 400
    assert raw.headers["x-amzn-ErrorType"] == "ValidationException"
    assert REQUEST_ID.match(raw.headers["x-amzn-RequestId"])
    assert list(raw.json()) == ["message"]


def test_a_body_that_is_not_json_is_refused(server: Server) -> None:
    raw = server.http.post(
        "/2015-03-31/functions",
        content=b"{not json",
        headers={"content-type": "application/json"},
        timeout=10,
    )

    assert raw.status_code == 400
    assert raw.headers["x-amzn-ErrorType"] == "InvalidRequestContentException"
    assert REQUEST_ID.match(raw.headers["x-amzn-RequestId"])
    assert raw.json()["message"].startswith("Could not parse request body into json")


def test_an_unknown_operation_still_answers_in_aws_shape(server: Server) -> None:
    raw = server.http.get("/2015-03-31/no-such-thing", timeout=10)

    assert raw.status_code == 404
    assert raw.headers["x-amzn-ErrorType"]
    assert REQUEST_ID.match(raw.headers["x-amzn-RequestId"])
    assert raw.json()["message"]
