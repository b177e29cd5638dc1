-- wrk script for bench_async.py: Event (asynchronous) invokes of a tiny JSON event.
wrk.method = "POST"
wrk.body = '{"n": 1}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Amz-Invocation-Type"] = "Event"
