#!/usr/bin/python3
"""A gRPC test client driven by JSON commands, one per stdin line.

A command:
  {"target": "127.0.0.1:PORT", "tls": null | {"ca": PATH, "server_name": NAME},
   "kind": "unary" | "server_stream" | "client_stream" | "bidi",
   "method": "/test.Echo/Unary", "requests": ["text", ...], "timeout": SECONDS | null}
Messages are the UTF-8 bytes of the strings (unary and server_stream send
the first). For server_stream and bidi each received message is a line
  {"event": "message", "data": TEXT, "initial": {METADATA}}
as it arrives; every call ends with a line
  {"event": "done", "code": "OK" | "UNAVAILABLE" | ..., "details": TEXT,
   "responses": [TEXT, ...], "initial": {...}, "trailers": {...}}.
One channel per (target, tls) is kept. Exits when stdin closes.
"""

import json
import sys

import grpc

channels = {}


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def metadata(md):
    out = {}
    for k, v in md or ():
        out[k] = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
    return out


def text(b):
    return b.decode("utf-8", "replace")


def channel(target, tls):
    key = (target, json.dumps(tls, sort_keys=True))
    if key not in channels:
        # What is tested is edge's behaviour: no retries of the client's own.
        options = [("grpc.enable_retries", 0)]
        if tls:
            with open(tls["ca"], "rb") as f:
                creds = grpc.ssl_channel_credentials(root_certificates=f.read())
            options.append(("grpc.ssl_target_name_override", tls["server_name"]))
            channels[key] = grpc.secure_channel(target, creds, options=options)
        else:
            channels[key] = grpc.insecure_channel(target, options=options)
    return channels[key]


def done(code, details, responses, initial, trailers):
    emit(
        {
            "event": "done",
            "code": code,
            "details": details or "",
            "responses": responses,
            "initial": metadata(initial),
            "trailers": metadata(trailers),
        }
    )


def single(call_with, request, timeout):
    """A unary or client-streaming call: one answer or an error."""
    try:
        reply, call = call_with(request, timeout=timeout)
        done("OK", call.details(), [text(reply)], call.initial_metadata(), call.trailing_metadata())
    except grpc.RpcError as e:
        done(e.code().name, e.details(), [], e.initial_metadata(), e.trailing_metadata())


def streaming(call):
    """A server-streaming or bidi call: each message as it arrives."""
    responses = []
    try:
        for m in call:
            responses.append(text(m))
            emit({"event": "message", "data": text(m), "initial": metadata(call.initial_metadata())})
    except grpc.RpcError:
        pass
    done(call.code().name, call.details(), responses, call.initial_metadata(), call.trailing_metadata())


def run(cmd):
    ch = channel(cmd["target"], cmd.get("tls"))
    kind, method = cmd["kind"], cmd["method"]
    requests = [r.encode() for r in cmd.get("requests") or []]
    timeout = cmd.get("timeout")
    if kind == "unary":
        single(ch.unary_unary(method).with_call, requests[0], timeout)
    elif kind == "client_stream":
        single(ch.stream_unary(method).with_call, iter(requests), timeout)
    elif kind == "server_stream":
        streaming(ch.unary_stream(method)(requests[0], timeout=timeout))
    elif kind == "bidi":
        streaming(ch.stream_stream(method)(iter(requests), timeout=timeout))
    else:
        raise ValueError(f"unknown kind {kind!r}")


def main():
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        if not line.strip():
            continue
        try:
            run(json.loads(line))
        except Exception as e:  # a broken command must not hang the test
            emit({"event": "done", "code": "CLIENT_ERROR", "details": repr(e),
                  "responses": [], "initial": {}, "trailers": {}})


if __name__ == "__main__":
    main()
