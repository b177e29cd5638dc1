"""Issue 17: Node.js functions (nodejs20.x, nodejs22.x, nodejs24.x) as on Lambda.

Every handler style (async, promise-returning, callback; CommonJS and ES
modules, nested paths), the context object, Lambda's environment, console
lines with Lambda's prefix, each error kind (a thrown error, Init errors,
an unhandled rejection, callbacks refused on nodejs24.x), node_modules in the
zip and in a layer, through boto3, the AWS CLI and a function URL; and
``ember runtimes install|ls|rm``, which downloads a Node major from npm.

nodejs20.x runs on the host's own node when it is Node 20 (else the module
installs it); nodejs22.x and nodejs24.x are installed by the tests, once per
machine thanks to EMBER_RUNTIME_CACHE (the servers of the suite inherit it).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import EMBER, ROLE, Server, host_pid_of, make_zip, wait_until

AWS = str(Path(sys.executable).parent / "aws")
# Downloaded Node tarballs, kept across runs (ignored by git, like .tools/ itself).
CACHE = Path(__file__).resolve().parents[2] / ".tools" / "runtime-cache"
os.environ.setdefault("EMBER_RUNTIME_CACHE", str(CACHE))

Deploy = Callable[..., str]


def runtimes_cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EMBER, "runtimes", *args],
        env={**server.cli_env(), "EMBER_RUNTIME_CACHE": str(CACHE)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def ensure_installed(server: Server, runtime: str) -> None:
    listing = json.loads(runtimes_cli(server, "ls", "--json").stdout)
    if runtime not in listing["available"]:
        done = runtimes_cli(server, "install", runtime)
        assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def node20(server: Server) -> str:
    ensure_installed(server, "nodejs20.x")
    return "nodejs20.x"


@pytest.fixture
def deploy(aws: Any, unique_name: str, node20: str) -> Iterator[Deploy]:
    """Create a Node function from inline files; deleted after the test."""
    created: list[str] = []

    def create(files: dict[str, str], handler: str = "index.handler", **settings: Any) -> str:
        name = f"{unique_name}-{len(created)}"
        params = {"Runtime": node20, "Role": ROLE, "Timeout": 10, **settings}
        aws.create_function(
            FunctionName=name, Handler=handler, Code={"ZipFile": make_zip(files)}, **params
        )
        created.append(name)
        return name

    yield create
    for name in created:
        aws.delete_function(FunctionName=name)


def invoke(aws: Any, name: str, event: Any = None, **extra: Any) -> tuple[Any, dict[str, Any]]:
    response = aws.invoke(
        FunctionName=name, Payload=json.dumps(event or {}).encode(), LogType="Tail", **extra
    )
    body = json.loads(response["Payload"].read())
    return body, response


def log_of(response: dict[str, Any]) -> str:
    return base64.b64decode(response["LogResult"]).decode()


CONTEXT = """
exports.handler = async (event, context) => {
  console.log("hello", {from: "node"});
  console.warn("careful");
  console.error("line one\\nline two");
  return {
    event,
    awsRequestId: context.awsRequestId,
    functionName: context.functionName,
    functionVersion: context.functionVersion,
    invokedFunctionArn: context.invokedFunctionArn,
    memoryLimitInMB: context.memoryLimitInMB,
    logGroupName: context.logGroupName,
    logStreamName: context.logStreamName,
    remaining: context.getRemainingTimeInMillis(),
    clientContext: context.clientContext,
    identity: context.identity === undefined ? null : context.identity,
    waits: context.callbackWaitsForEmptyEventLoop,
    env: {
      NODE_PATH: process.env.NODE_PATH,
      AWS_EXECUTION_ENV: process.env.AWS_EXECUTION_ENV,
      LAMBDA_TASK_ROOT: process.env.LAMBDA_TASK_ROOT,
      _HANDLER: process.env._HANDLER,
    },
  };
};
"""


def test_an_async_handler_gets_lambdas_context_environment_and_log_lines(
    aws: Any, deploy: Deploy
) -> None:
    name = deploy({"index.js": CONTEXT}, MemorySize=256)
    custom = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
    seen, response = invoke(aws, name, {"a": 1}, ClientContext=custom)
    assert "FunctionError" not in response, seen
    request_id = response["ResponseMetadata"]["RequestId"]
    assert seen["event"] == {"a": 1}
    assert seen["awsRequestId"] == request_id
    assert seen["functionName"] == name
    assert seen["functionVersion"] == "$LATEST"
    assert seen["invokedFunctionArn"].endswith(f":function:{name}")
    assert seen["memoryLimitInMB"] == "256"
    assert seen["logGroupName"] == f"/aws/lambda/{name}"
    assert seen["logStreamName"]
    assert 0 < seen["remaining"] <= 10_000
    assert seen["clientContext"]["custom"] == {"k": "v"}
    assert seen["waits"] is True
    assert seen["env"] == {
        "NODE_PATH": "/opt/nodejs/node20/node_modules:/opt/nodejs/node_modules:"
        "/var/runtime/node_modules:/var/runtime:/var/task",
        "AWS_EXECUTION_ENV": "AWS_Lambda_nodejs20.x",
        "LAMBDA_TASK_ROOT": "/var/task",
        "_HANDLER": "index.handler",
    }
    lines = log_of(response).split("\n")  # not splitlines: a record keeps its \r
    logged = [line.split("\t") for line in lines if f"\t{request_id}\t" in line]
    assert [(parts[2], parts[3]) for parts in logged] == [
        ("INFO", "hello { from: 'node' }"),
        ("WARN", "careful"),
        ("ERROR", "line one\rline two"),
    ]
    assert all(parts[0].endswith("Z") and parts[0].startswith("20") for parts in logged)


@pytest.mark.parametrize(
    ("files", "handler"),
    [
        ({"index.mjs": "export const handler = async (e) => ({kind: 'mjs', e});"}, "index.handler"),
        (
            {
                "package.json": '{"type": "module"}',
                "app.js": "export const handler = async (e) => ({kind: 'esm-js', e});",
            },
            "app.handler",
        ),
        ({"lib.cjs": "module.exports.run = async (e) => ({kind: 'cjs', e});"}, "lib.run"),
        (
            {
                "src/api/app.js": "exports.handlers = "
                "{get: (e) => Promise.resolve({kind: 'nested', e})};"
            },
            "src/api/app.handlers.get",
        ),
    ],
    ids=["mjs", "type-module", "cjs", "nested-path-promise"],
)
def test_module_kinds_and_nested_paths_resolve_as_on_lambda(
    aws: Any, deploy: Deploy, files: dict[str, str], handler: str
) -> None:
    name = deploy(files, handler=handler)
    seen, response = invoke(aws, name, {"n": 2})
    assert "FunctionError" not in response, seen
    assert seen["e"] == {"n": 2}
    assert seen["kind"] in {"mjs", "esm-js", "cjs", "nested"}


CALLBACK = """
exports.handler = (event, context, callback) => {
  context.callbackWaitsForEmptyEventLoop = event.waits;
  setTimeout(() => console.log("timer fired"), 200);
  if (event.fail) return callback(new Error("callback failed"));
  callback(null, {answer: 42});
};
"""


def test_a_callback_handler_waits_for_the_event_loop_unless_told_not_to(
    aws: Any, deploy: Deploy
) -> None:
    name = deploy({"index.js": CALLBACK})
    seen, response = invoke(aws, name, {"waits": True})
    assert seen == {"answer": 42}
    assert "timer fired" in log_of(response)
    seen, response = invoke(aws, name, {"waits": False})
    assert seen == {"answer": 42}
    assert "timer fired" not in log_of(response)
    seen, response = invoke(aws, name, {"waits": False, "fail": True})
    assert response["FunctionError"] == "Unhandled"
    assert seen["errorType"] == "Error"
    assert seen["errorMessage"] == "callback failed"


def test_a_thrown_error_comes_back_as_lambdas_error_payload(aws: Any, deploy: Deploy) -> None:
    source = "exports.handler = async () => { null.boom; };"
    seen, response = invoke(aws, deploy({"index.js": source}))
    assert response["FunctionError"] == "Unhandled"
    assert seen["errorType"] == "TypeError"
    assert "Cannot read properties of null" in seen["errorMessage"]
    assert seen["trace"][0].startswith("TypeError: Cannot read properties of null")
    assert any("/var/task/index.js" in line for line in seen["trace"])
    thrown = "exports.handler = async () => { throw 'plain string'; };"
    seen, _ = invoke(aws, deploy({"index.js": thrown}))
    assert seen == {"errorType": "string", "errorMessage": "plain string", "trace": []}


@pytest.mark.parametrize(
    ("files", "handler", "error_type", "message"),
    [
        (
            {"index.js": "exports.handler = async () => 1;"},
            "missing.handler",
            "Runtime.ImportModuleError",
            "Error: Cannot find module 'missing'",
        ),
        (
            {"index.js": "require('not-a-package'); exports.handler = async () => 1;"},
            "index.handler",
            "Runtime.ImportModuleError",
            "Error: Cannot find module 'not-a-package'",
        ),
        (
            {"index.js": "exports.other = async () => 1;"},
            "index.handler",
            "Runtime.HandlerNotFound",
            "index.handler is undefined or not exported",
        ),
        (
            {"index.js": "exports.handler = async () => {{ 1;"},
            "index.handler",
            "Runtime.UserCodeSyntaxError",
            "SyntaxError: Unexpected end of input",
        ),
        (
            {"index.mjs": "throw new RangeError('bad init');"},
            "index.handler",
            "RangeError",
            "bad init",
        ),
    ],
    ids=["no-module", "missing-dependency", "no-export", "syntax", "init-throws"],
)
def test_init_errors_are_lambdas(
    aws: Any, deploy: Deploy, files: dict[str, str], handler: str, error_type: str, message: str
) -> None:
    seen, response = invoke(aws, deploy(files, handler=handler))
    assert response["FunctionError"] == "Unhandled"
    assert seen["errorType"] == error_type
    assert seen["errorMessage"].startswith(message)


def test_an_unhandled_rejection_fails_the_call_and_the_next_gets_a_fresh_runtime(
    aws: Any, deploy: Deploy
) -> None:
    source = """
let calls = 0;
exports.handler = async (event) => {
  calls += 1;
  if (event.reject) {
    Promise.reject(new Error("nobody caught me"));
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  return calls;
};
"""
    name = deploy({"index.js": source})
    assert invoke(aws, name)[0] == 1
    seen, response = invoke(aws, name, {"reject": True})
    assert response["FunctionError"] == "Unhandled"
    assert seen["errorType"] == "Runtime.UnhandledPromiseRejection"
    assert seen["errorMessage"] == "Error: nobody caught me"
    assert invoke(aws, name)[0] == 1  # a new runtime: its module state starts over


def test_node_modules_in_the_zip_and_in_a_layer(aws: Any, deploy: Deploy) -> None:
    layer = aws.publish_layer_version(
        LayerName="node-shout",
        Content={
            "ZipFile": make_zip(
                {"nodejs/node_modules/shout/index.js": "module.exports = (s) => s.toUpperCase();"}
            )
        },
        CompatibleRuntimes=["nodejs20.x", "nodejs22.x", "nodejs24.x"],
    )
    files = {
        "node_modules/greet/index.js": "module.exports = (n) => `hello ${n}`;",
        "index.mjs": "import greet from 'greet';\nimport { createRequire } from 'node:module';\n"
        "const shout = createRequire(import.meta.url)('shout');\n"
        "export const handler = async (e) => shout(greet(e.name));",
    }
    try:
        name = deploy(files, Layers=[layer["LayerVersionArn"]])
        seen, response = invoke(aws, name, {"name": "node"})
        assert "FunctionError" not in response, seen
        assert seen == "HELLO NODE"
    finally:
        aws.delete_layer_version(LayerName="node-shout", VersionNumber=layer["Version"])


def test_versions_aliases_and_the_aws_cli(
    aws: Any, deploy: Deploy, server: Server, tmp_path: Path
) -> None:
    name = deploy({"index.js": "exports.handler = async (e, c) => c.functionVersion;"})
    version = aws.publish_version(FunctionName=name)["Version"]
    aws.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    assert invoke(aws, name, Qualifier="live")[0] == version
    out = tmp_path / "out.json"
    ran = subprocess.run(
        [
            AWS,
            "--endpoint-url",
            server.url,
            "--region",
            "us-east-1",
            "lambda",
            "invoke",
            "--function-name",
            name,
            "--payload",
            "{}",
            str(out),
        ],
        env={**server.cli_env(), "AWS_MAX_ATTEMPTS": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(out.read_text()) == "$LATEST"


# Writes, waits a second, leaves a marker in its /tmp, writes again.
SLOW_STREAM = """
import fs from "node:fs";
export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
  const stream = awslambda.HttpResponseStream.from(responseStream, {
    statusCode: 200, headers: {"content-type": "text/plain", "x-from": "node"}});
  stream.write("first ");
  await new Promise((resolve) => setTimeout(resolve, 1000));
  fs.writeFileSync("/tmp/after-sleep", "");
  stream.write("second");
  stream.end();
});
"""

BROKEN_STREAM = """
export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
  console.log("about to break");
  responseStream.write("partial");
  throw new TypeError("broke mid-stream");
});
"""


def url_of(aws: Any, name: str, mode: str = "BUFFERED") -> str:
    url = aws.create_function_url_config(FunctionName=name, AuthType="NONE", InvokeMode=mode)
    aws.add_permission(
        FunctionName=name,
        StatementId="url",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="NONE",
    )
    return str(url["FunctionUrl"])


def test_a_function_url_answers_a_plain_handler(aws: Any, deploy: Deploy) -> None:
    plain = deploy(
        {
            "index.js": "exports.handler = async (e) => ({statusCode: 201, "
            "headers: {'x-from': 'node'}, body: `path ${e.rawPath}`});"
        }
    )
    answer = httpx.get(url_of(aws, plain) + "x")
    assert (answer.status_code, answer.headers["x-from"], answer.text) == (201, "node", "path /x")


def test_streamify_response_streams_through_boto3_before_the_handler_ends(
    aws: Any, server: Server, deploy: Deploy
) -> None:
    name = deploy({"index.mjs": SLOW_STREAM})
    stream = iter(aws.invoke_with_response_stream(FunctionName=name)["EventStream"])
    # As on Lambda, the HTTP prelude comes first in the payload, ended by 8 NUL bytes.
    prelude = next(stream)["PayloadChunk"]["Payload"]
    assert prelude.endswith(b"\0" * 8) and json.loads(prelude[:-8])["statusCode"] == 200
    assert next(stream)["PayloadChunk"]["Payload"] == b"first "
    # The handler leaves its marker after the wait, after its first write.
    marker = Path(f"/proc/{host_pid_of(server, name)}/root/tmp/after-sleep")
    assert not marker.exists()
    rest = list(stream)
    assert "InvokeComplete" in rest[-1] and "ErrorCode" not in rest[-1]["InvokeComplete"]
    assert marker.exists()  # the check above could see it: the order is proven
    # Plain Invoke gathers the same stream into one payload.
    plain = aws.invoke(FunctionName=name)
    assert b"second" in plain["Payload"].read()


def test_a_streaming_url_sends_status_headers_and_the_first_chunk_at_once(
    aws: Any, server: Server, deploy: Deploy
) -> None:
    name = deploy({"index.mjs": SLOW_STREAM})
    url = url_of(aws, name, "RESPONSE_STREAM")
    with httpx.stream("GET", url, timeout=10) as answer:
        assert (answer.status_code, answer.headers["x-from"]) == (200, "node")
        assert answer.headers["content-type"] == "text/plain"
        pieces = answer.iter_raw()
        assert next(pieces) == b"first "
        marker = Path(f"/proc/{host_pid_of(server, name)}/root/tmp/after-sleep")
        assert not marker.exists()
        assert b"".join(pieces) == b"second"
        assert marker.exists()
    # curl reads the same body.
    ran = subprocess.run(["curl", "-sS", "-N", url], capture_output=True, timeout=30)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == b"first second"


def test_an_error_mid_stream_ends_it_with_lambdas_error(aws: Any, deploy: Deploy) -> None:
    name = deploy({"index.mjs": BROKEN_STREAM})
    received = list(
        aws.invoke_with_response_stream(FunctionName=name, LogType="Tail")["EventStream"]
    )
    chunks = b"".join(e["PayloadChunk"]["Payload"] for e in received if "PayloadChunk" in e)
    assert chunks == b"partial"
    complete = received[-1]["InvokeComplete"]
    assert complete["ErrorCode"] == "TypeError"
    assert complete["ErrorDetails"] == "broke mid-stream"
    assert "about to break" in base64.b64decode(complete["LogResult"]).decode()
    # The sandbox serves the next call.
    again = list(aws.invoke_with_response_stream(FunctionName=name)["EventStream"])
    assert again[-1]["InvokeComplete"]["ErrorCode"] == "TypeError"


def test_install_list_and_remove_a_node_major(aws: Any, server: Server, unique_name: str) -> None:
    """nodejs24.x: refused until installed, callbacks refused as Lambda refuses them."""
    runtimes_cli(server, "rm", "nodejs24.x")  # from an earlier test of this session
    code = {
        "ZipFile": make_zip({"index.mjs": "export const handler = async () => process.version;"})
    }
    with pytest.raises(aws.exceptions.InvalidParameterValueException) as refused:
        aws.create_function(
            FunctionName=unique_name,
            Runtime="nodejs24.x",
            Handler="index.handler",
            Role=ROLE,
            Code=code,
        )
    assert "ember runtimes install nodejs24.x" in str(refused.value)
    done = runtimes_cli(server, "install", "nodejs24.x")
    assert done.returncode == 0, done.stderr
    assert "Installed nodejs24.x: Node 24." in done.stdout
    listing = json.loads(runtimes_cli(server, "ls", "--json").stdout)
    assert "nodejs24.x" in [entry["runtime"] for entry in listing["runtimes"]]
    aws.create_function(
        FunctionName=unique_name,
        Runtime="nodejs24.x",
        Handler="index.handler",
        Role=ROLE,
        Code=code,
    )
    callback = f"{unique_name}-cb"
    aws.create_function(
        FunctionName=callback,
        Runtime="nodejs24.x",
        Handler="index.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"index.js": "exports.handler = (e, c, cb) => cb(null, 1);"})},
    )
    try:
        seen, _ = invoke(aws, unique_name)
        assert seen.startswith("v24.")
        seen, response = invoke(aws, callback)
        assert response["FunctionError"] == "Unhandled"
        assert seen["errorType"] == "Runtime.CallbackHandlerDeprecated"
        assert seen["errorMessage"].startswith(
            "ERROR: AWS Lambda has removed support for callback-based function handlers "
            "starting with Node.js 24."
        )
    finally:
        aws.delete_function(FunctionName=unique_name)
        aws.delete_function(FunctionName=callback)
    removed = runtimes_cli(server, "rm", "nodejs24.x")
    assert removed.returncode == 0, removed.stderr
    listing = json.loads(runtimes_cli(server, "ls", "--json").stdout)
    assert "nodejs24.x" not in listing["available"]


def ember_deploy(
    server: Server, name: str, path: Path, runtime: str
) -> subprocess.CompletedProcess[str]:
    command = [EMBER, "deploy", name, str(path), "--handler", "index.handler"]
    return subprocess.run(
        [*command, "--runtime", runtime],
        env=server.cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def npm_pack(directory: Path, name: str, source: str) -> Path:
    """A local npm package tarball (npm ci installs it without the registry)."""
    directory.mkdir(parents=True)
    (directory / "package.json").write_text(json.dumps({"name": name, "version": "1.0.0"}))
    (directory / "index.js").write_text(source)
    packed = subprocess.run(
        ["npm", "pack", "--silent", "--pack-destination", str(directory.parent)],
        cwd=directory,
        capture_output=True,
        text=True,
        check=True,
    )
    return directory.parent / packed.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_ember_deploy_runs_npm_ci_omitting_dev_dependencies(
    aws: Any, server: Server, tmp_path: Path, unique_name: str, node20: str
) -> None:
    vendor = tmp_path / "vendor"
    pad = npm_pack(vendor / "pad-src", "pad-local", "module.exports = (s) => `[${s}]`;")
    dev = npm_pack(vendor / "dev-src", "dev-only", "module.exports = 1;")
    project = tmp_path / "fn"
    project.mkdir()
    (project / "package.json").write_text(
        json.dumps(
            {
                "name": "fn",
                "version": "1.0.0",
                "dependencies": {"pad-local": f"file:{pad}"},
                "devDependencies": {"dev-only": f"file:{dev}"},
            }
        )
    )
    (project / "index.js").write_text(
        "const pad = require('pad-local');\n"
        "let dev = true; try { require('dev-only'); } catch { dev = false; }\n"
        "exports.handler = async (e) => ({pad: pad(e.s), dev});\n"
    )
    locked = subprocess.run(
        ["npm", "install", "--package-lock-only", "--offline", "--no-audit", "--no-fund"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert locked.returncode == 0, locked.stderr
    deployed = ember_deploy(server, unique_name, project, node20)
    assert deployed.returncode == 0, deployed.stderr
    assert "npm ci installed 1 package(s)" in deployed.stderr
    assert not (project / "node_modules").exists()  # the user's directory is left alone
    try:
        seen, _ = invoke(aws, unique_name, {"s": "x"})
        assert seen == {"pad": "[x]", "dev": False}
    finally:
        aws.delete_function(FunctionName=unique_name)


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_the_node_hello_example_deploys_and_answers(
    aws: Any, server: Server, unique_name: str, node20: str
) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "node-hello"
    deployed = ember_deploy(server, unique_name, example, node20)
    assert deployed.returncode == 0, deployed.stderr
    try:
        seen, _ = invoke(aws, unique_name, {"name": "ember"})
        assert seen["message"] == "Hello, ember, from Node.js on ember!"
    finally:
        aws.delete_function(FunctionName=unique_name)


def test_a_manifest_deploys_a_node_function_that_runs_sync_and_async(
    aws: Any, server: Server, tmp_path: Path, node20: str
) -> None:
    label = f"n{uuid.uuid4().hex[:8]}"
    name = f"node-{label}"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "index.mjs").write_text(
        "export const handler = async (event, context) => {\n"
        "  console.log(`EVENT ${JSON.stringify(event)}`);\n"
        "  return {runtime: process.env.AWS_EXECUTION_ENV, event};\n"
        "};\n"
    )
    document = {
        "apiVersion": "ember.dev/v1",
        "kind": "Function",
        "metadata": {"name": name, "labels": {"app": label}},
        "spec": {
            "runtime": node20,
            "handler": "index.handler",
            "code": {"path": "src"},
            "rateLimit": {"rate": 50, "period": "1s"},
        },
    }
    (tmp_path / "fn.yaml").write_text(json.dumps(document))
    applied = subprocess.run(
        [EMBER, "apply", "-f", str(tmp_path)],
        env=server.cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert applied.returncode == 0, applied.stderr
    try:
        wait_until(lambda: function_exists(aws, name))
        seen, _ = invoke(aws, name, {"sync": 1})
        assert seen == {"runtime": f"AWS_Lambda_{node20}", "event": {"sync": 1}}
        accepted = aws.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"later": 2}')
        assert accepted["StatusCode"] == 202
        wait_until(lambda: 'EVENT {"later":2}' in function_logs(server, name))
    finally:
        server.http.delete(f"/_ember/apis/ember.dev/v1/namespaces/default/functions/{name}")


def function_exists(aws: Any, name: str) -> bool:
    try:
        aws.get_function(FunctionName=name)
    except aws.exceptions.ResourceNotFoundException:
        return False
    return True


def function_logs(server: Server, name: str) -> str:
    response = server.http.get(f"/_ember/functions/{name}/logs", params={"since": 0}, timeout=10)
    return str(response.json().get("logs", "")) if response.status_code == 200 else ""


def test_a_handler_without_an_export_is_refused_at_create(aws: Any, unique_name: str) -> None:
    with pytest.raises(aws.exceptions.InvalidParameterValueException) as refused:
        aws.create_function(
            FunctionName=unique_name,
            Runtime="nodejs20.x",
            Role=ROLE,
            Handler="index",
            Code={"ZipFile": make_zip({"index.js": "exports.handler = async () => 1;"})},
        )
    assert "a Node.js handler is 'file.export'" in str(refused.value)
