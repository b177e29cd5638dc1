"""stream: a streaming function URL — a countdown written line by line as it happens.

Returning a generator streams (ember's extension: Lambda's Python runtime cannot);
the dict yielded first sets the URL's status and headers. Deployed with an
InvokeMode RESPONSE_STREAM URL, `curl -N` prints each line as it is written.
"""

import time


def handler(event, context):
    params = event.get("queryStringParameters") or {}
    count = min(int(params.get("from", "5")), 30)
    yield {"statusCode": 200, "headers": {"content-type": "text/plain; charset=utf-8"}}
    for left in range(count, 0, -1):
        yield f"{left}...\n"
        time.sleep(0.5)
    yield "liftoff\n"
