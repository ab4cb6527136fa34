-- Every request asks the server to close the connection after the response.
wrk.headers["Connection"] = "close"
