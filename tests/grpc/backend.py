#!/usr/bin/python3
"""A gRPC test backend for edge's gRPC tests (no generated code).

Service test.Echo, messages raw bytes:
  Unary         echoes the request; "status:CODE:MESSAGE" aborts with that
                status, "sleep:MS" sleeps MS ms and answers b"slept".
  ServerStream  "N:MS" streams b"0", b"1", ... (MS ms between messages).
  ClientStream  answers the messages joined by b"|".
  Bidi          answers each message m with b"echo:" + m.
Every answer says which backend it came from (x-backend metadata).
grpc.health.v1.Health/Check answers SERVING, or NOT_SERVING while the
--health-file contains NOT_SERVING.

Prints the port it listens on (127.0.0.1) as its first stdout line;
exits on SIGTERM.
"""

import argparse
import os
import time

import grpc
from serve import serve

CODES = {c.value[0]: c for c in grpc.StatusCode}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--health-file")
    p.add_argument("--unavailable", action="store_true")
    args = p.parse_args()
    name = args.name
    backend = (("x-backend", name),)

    def unary(request, context):
        context.set_trailing_metadata(backend + (("x-trailer", "kept"),))
        if args.unavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"backend {name} unavailable")
        if request.startswith(b"status:"):
            _, code, message = request.decode().split(":", 2)
            context.abort(CODES.get(int(code), grpc.StatusCode.UNKNOWN), message)
        context.send_initial_metadata(backend)
        if request.startswith(b"sleep:"):
            time.sleep(int(request[len(b"sleep:"):]) / 1000)
            return b"slept"
        return request

    def server_stream(request, context):
        context.send_initial_metadata(backend)
        context.set_trailing_metadata(backend)
        n, ms = (int(x) for x in request.decode().split(":"))
        for i in range(n):
            if i:
                time.sleep(ms / 1000)
            yield str(i).encode()

    def client_stream(requests, context):
        context.set_trailing_metadata(backend)
        return b"|".join(requests)

    def bidi(requests, context):
        context.set_trailing_metadata(backend)
        for m in requests:
            yield b"echo:" + m

    def health(request, context):
        service = ""
        if request[:1] == b"\x0a" and len(request) >= 2:
            service = request[2 : 2 + request[1]].decode()
        if service not in ("", "test.Echo"):
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {service!r}")
        if args.health_file and os.path.exists(args.health_file):
            with open(args.health_file) as f:
                if "NOT_SERVING" in f.read():
                    return b"\x08\x02"
        return b"\x08\x01"

    echo = grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        },
    )
    checks = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {"Check": grpc.unary_unary_rpc_method_handler(health)},
    )
    serve((echo, checks), 16, args.tls)


if __name__ == "__main__":
    main()
