-- wrk script for the measured runs: POST a tiny JSON event on every request.
wrk.method = "POST"
wrk.body = '{"n": 1}'
wrk.headers["Content-Type"] = "application/json"
