-- POST a 256 KiB body (echoed back by the app's /echo).
wrk.method = "POST"
wrk.body = string.rep("a", 262144)
wrk.headers["Content-Type"] = "application/octet-stream"
