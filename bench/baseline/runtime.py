"""A minimal Lambda runtime client for the baseline handler: poll the
Runtime API for the next event, call the handler, post its answer; as
Lambda's Python runtime does, after importing the handler's module once."""

import json
import os
import urllib.request

import sale_handler

API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"


def main():
    while True:
        with urllib.request.urlopen(API + "next") as r:
            request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
            event = json.loads(r.read())
        try:
            body, kind = json.dumps(sale_handler.handler(event, None)).encode(), "response"
        except Exception as e:  # noqa: BLE001 - reported to the runtime API, as Lambda does
            body, kind = json.dumps({"errorMessage": str(e), "errorType": type(e).__name__}).encode(), "error"
        post = urllib.request.Request(API + request_id + "/" + kind, data=body, method="POST")
        urllib.request.urlopen(post).read()


if __name__ == "__main__":
    main()
