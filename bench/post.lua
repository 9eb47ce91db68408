-- wrk script: one small JSON invocation per request.
wrk.method = "POST"
wrk.body = '{"n": 1}'
wrk.headers["Content-Type"] = "application/json"
