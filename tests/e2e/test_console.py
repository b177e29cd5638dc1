"""The web console in a real headless Chromium (Debian's, driven by Playwright).

Signs in with access keys of a real server, loads every page, checks uPlot drew
its plots with data, invokes from the Test form and sees the call in the
history and the plot, follows the logs, redrives a dead letter, and is refused
with a wrong secret or a policy that denies the read.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import Server, lambda_client, make_zip, wait_until

CHROMIUM = "/usr/bin/chromium"
ROLE = "arn:aws:iam::000000000000:role/console"
ECHO = (
    "def handler(event, context):\n"
    "    print('console-log', event.get('mark'))\n"
    "    if event.get('fail'):\n"
    "        raise RuntimeError('asked to fail')\n"
    "    return {'echo': event}\n"
)

sync_api = pytest.importorskip("playwright.sync_api")


def _chromium_missing() -> str | None:
    if shutil.which(CHROMIUM) is None:
        return f"{CHROMIUM} is not installed (scripts/host-deps.sh installs Debian's chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _chromium_missing()
    if missing:
        print(missing)
        pytest.skip(missing)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def function(server: Server) -> Iterator[str]:
    name = "console-echo"
    lam = lambda_client(server)
    lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": ECHO})},
        Environment={"Variables": {"GREETING": "hello"}},
    )
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lam.invoke(FunctionName=name, Payload=json.dumps({"mark": "first"}))
    yield name
    lam.delete_function(FunctionName=name)
    lam.close()


def new_key(server: Server, user: str, statements: list[dict[str, Any]]) -> tuple[str, str]:
    policy = {"Version": "2012-10-17", "Statement": statements}
    body = {"UserName": user, "Policy": json.dumps(policy)}
    created = server.http.post("/_ember/keys", json=body)
    assert created.status_code in (200, 201), created.text
    document = created.json()
    return document["AccessKeyId"], document["SecretAccessKey"]


def sign_in(browser: Any, server: Server, key_id: str, secret: str) -> Any:
    page = browser.new_page()
    page.goto(server.url + "/console/")
    assert "/console/signin" in page.url  # no session: sent to sign in
    page.fill("input[name=access_key_id]", key_id)
    page.fill("input[name=secret]", secret)
    page.click("button[type=submit]")
    return page


def root_page(browser: Any, server: Server) -> Any:
    keys = server.credentials
    page = sign_in(browser, server, keys.access_key, keys.secret_key)
    assert page.url.endswith("/console/"), page.content()
    return page


def plotted(page: Any, plot: str) -> int:
    """How many minutes of data uPlot drew in ``plot``, whose canvas exists."""
    return int(
        page.evaluate(
            """(id) => {
                const plot = window.emberPlots && window.emberPlots[id];
                if (!plot || !document.querySelector('#' + id + ' canvas')) return -1;
                return plot.data[1].reduce((sum, v) => sum + (v || 0), 0);
            }""",
            plot,
        )
    )


def test_the_functions_page_lists_counts_and_sparklines(
    browser: Any, server: Server, function: str
) -> None:
    page = root_page(browser, server)
    row = page.locator("table.functions tr", has_text=function)
    assert row.count() == 1
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "python3.11"
    assert int(cells[4]) >= 1  # the fixture's invocation, within the last hour
    assert row.locator("svg.spark polyline").count() == 1
    page.close()


def test_the_function_page_plots_and_invokes_from_the_test_form(
    browser: Any, server: Server, function: str
) -> None:
    page = root_page(browser, server)
    page.goto(f"{server.url}/console/functions/{function}")
    assert "GREETING" in page.inner_text("table.env")
    assert "live" in page.inner_text("#versions")  # the alias
    for plot in ("plot-calls", "plot-duration", "plot-concurrency"):
        page.wait_for_function(f"window.emberPlots && window.emberPlots['{plot}']")
    before = plotted(page, "plot-calls")
    assert before >= 1
    page.fill("textarea[name=payload]", json.dumps({"mark": "from-the-form"}))
    page.click("#test button[type=submit]")
    page.wait_for_selector("#test-result pre.result")
    result = page.inner_text("#test-result")
    assert "from-the-form" in result and "Succeeded" in result
    assert "console-log from-the-form" in result  # the log tail
    request_id = page.inner_text("#test-result code")
    # The history and the plots refresh after the call.
    page.wait_for_selector(f"#history td:has-text('{request_id}')")
    page.wait_for_function(
        "(n) => window.emberPlots['plot-calls'].data[1].reduce((s, v) => s + (v || 0), 0) > n",
        arg=before,
    )
    page.close()


def test_history_filters_by_outcome(browser: Any, server: Server, function: str) -> None:
    lam = lambda_client(server)
    lam.invoke(FunctionName=function, Payload=json.dumps({"fail": True}))
    lam.close()
    page = root_page(browser, server)
    base = f"{server.url}/console/functions/{function}"
    page.goto(base)
    wait_until(lambda: page.reload() and "error" in page.inner_text("#history tbody"))
    page.select_option("select[name=outcome]", "error")
    page.click("form.filters button")
    outcomes = page.locator("#history tbody tr td:nth-child(5)").all_inner_texts()
    assert outcomes and all(o.startswith("error") for o in outcomes)
    page.close()


def test_logs_follow_new_lines(browser: Any, server: Server, function: str) -> None:
    page = root_page(browser, server)
    page.goto(f"{server.url}/console/functions/{function}")
    lam = lambda_client(server)
    lam.invoke(FunctionName=function, Payload=json.dumps({"mark": "followed-line"}))
    lam.close()
    page.wait_for_function(
        "document.getElementById('log-lines').innerText.includes('console-log followed-line')"
    )
    page.close()


def test_a_dead_letter_is_redriven(browser: Any, server: Server, function: str) -> None:
    lam = lambda_client(server)
    lam.invoke(FunctionName=function, InvocationType="Event", Payload=json.dumps({"fail": True}))
    lam.close()

    def letters() -> list[Any]:
        found = server.http.get(f"/_ember/functions/{function}/dead-letters").json()
        return list(found["deadLetters"])

    wait_until(letters, timeout=60)
    page = root_page(browser, server)
    page.goto(f"{server.url}/console/functions/{function}")
    page.locator("table.letters button").first.click()
    page.wait_for_selector("text=Redrove 1 dead letter(s).")
    page.close()


def test_the_platform_pages_load(browser: Any, server: Server, function: str) -> None:
    limit = server.http.put(f"/_ember/functions/{function}/limits", json={"rate": "500/s"})
    assert limit.status_code == 200, limit.text
    page = root_page(browser, server)
    for path, heading in (
        ("queue", "Async queue"),
        ("sandboxes", "Sandboxes"),
        ("limits", "Rate limits and reserved concurrency"),
    ):
        response = page.goto(f"{server.url}/console/{path}")
        assert response.status == 200
        assert page.inner_text("h1") == heading
    assert function in page.goto(f"{server.url}/console/sandboxes").text()
    assert "500/s token-bucket (per function)" in page.goto(f"{server.url}/console/limits").text()
    for path in ("", "queue", "sandboxes", "limits", f"functions/{function}"):
        page.goto(f"{server.url}/console/{path}")
        assert server.credentials.secret_key not in page.content()
    page.close()


def test_pages_read_without_javascript(browser: Any, server: Server, function: str) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(server.url + "/console/")
    page.fill("input[name=access_key_id]", server.credentials.access_key)
    page.fill("input[name=secret]", server.credentials.secret_key)
    page.click("button[type=submit]")
    page.click(f"text={function}")
    assert page.locator("#history tbody tr").count() >= 1
    assert "console-log" in page.inner_text("#log-lines")
    context.close()


def test_a_wrong_secret_is_refused(browser: Any, server: Server) -> None:
    page = sign_in(browser, server, server.credentials.access_key, "not-the-secret")
    assert "/console/signin" in page.url
    assert "not valid" in page.inner_text("p.error")
    assert page.goto(server.url + "/console/").url.endswith("/console/signin?next=/console/")
    page.close()


def test_a_user_denied_list_functions_sees_an_error_page(
    browser: Any, server: Server, function: str
) -> None:
    key_id, secret = new_key(
        server,
        "console-denied",
        [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "lambda:ListFunctions", "Resource": "*"},
        ],
    )
    page = sign_in(browser, server, key_id, secret)
    assert page.inner_text("h1") == "AccessDeniedException"
    assert function not in page.content()
    # What the policy allows still shows.
    assert page.goto(f"{server.url}/console/functions/{function}").status == 200
    page.close()


def test_the_session_cookie_is_http_only_strict_and_forms_need_the_csrf_token(
    browser: Any, server: Server, function: str
) -> None:
    page = root_page(browser, server)
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # A post without the form's token is refused, even with the session.
    jar = {cookie["name"]: cookie["value"]}
    forged = httpx.post(
        f"{server.url}/console/functions/{function}/test",
        data={"payload": "{}"},
        cookies=jar,
    )
    assert forged.status_code == 403 and "CSRF" in forged.text
    kept = httpx.post(f"{server.url}/console/signout", data={}, cookies=jar)
    assert kept.status_code == 403 and "CSRF" in kept.text  # another site cannot sign you out
    page.close()


def test_signing_out_ends_the_session(browser: Any, server: Server) -> None:
    page = root_page(browser, server)
    page.click("header button")
    assert "/console/signin" in page.url
    assert "/console/signin" in page.goto(server.url + "/console/").url
    page.close()


def test_a_reader_sees_only_what_its_policy_allows(
    browser: Any, server: Server, function: str
) -> None:
    key_id, secret = new_key(
        server,
        "console-reader",
        [{"Effect": "Allow", "Action": "lambda:GetFunction", "Resource": "*"}],
    )
    page = sign_in(browser, server, key_id, secret)
    assert page.inner_text("h1") == "AccessDeniedException"
    page.goto(f"{server.url}/console/functions/{function}")
    assert page.inner_text("h1") == function
    assert "does not allow reading the invocation history" in page.inner_text("#history")
    assert "does not allow reading the logs" in page.inner_text("#logs")
    assert page.locator("#history table").count() == 0
    page.close()


def test_with_auth_none_there_is_no_sign_in(browser: Any, spawn_server: Any) -> None:
    open_server = spawn_server(None, "--auth", "none")
    page = browser.new_page()
    response = page.goto(open_server.url + "/console/")
    assert response.status == 200 and page.inner_text("h1") == "Functions"
    assert page.goto(open_server.url + "/console/signin").url.endswith("/console/")
    page.close()


def test_history_pages_to_older_invocations(browser: Any, server: Server, function: str) -> None:
    lam = lambda_client(server)
    for n in range(26):  # more than one page of 25
        lam.invoke(FunctionName=function, Payload=json.dumps({"mark": f"page-{n}"}))
    lam.close()
    page = root_page(browser, server)
    page.goto(f"{server.url}/console/functions/{function}")
    first = page.locator("#history tbody tr td:nth-child(2)").all_inner_texts()
    assert len(first) == 25
    page.click("a[rel=next]")
    older = page.locator("#history tbody tr td:nth-child(2)").all_inner_texts()
    assert older and not set(older) & set(first)
    page.close()


def test_another_sites_form_cannot_sign_in(server: Server) -> None:
    keys = server.credentials
    form = {"access_key_id": keys.access_key, "secret": keys.secret_key}
    response = httpx.post(
        f"{server.url}/console/signin", data=form, headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403 and "set-cookie" not in response.headers
