"""How the tests' gRPC servers run (imported by backend.py and
bookstore.py): on 127.0.0.1 at a port the kernel picks, printed as the
first line of stdout; plain or with TLS; gone at once on SIGTERM."""

import os
import signal
import sys
from concurrent import futures

import grpc


def serve(handlers, workers, tls=None):
    """Serves the generic `handlers` until SIGTERM; `tls` is (cert, key)
    file names, or None for plain HTTP/2."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        options=[
            # edge pings idle HTTP/2 connections: never answer with GOAWAY.
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 1000),
            ("grpc.http2.max_ping_strikes", 0),
            ("grpc.keepalive_permit_without_calls", 1),
        ],
    )
    server.add_generic_rpc_handlers(handlers)
    if tls:
        with open(tls[0], "rb") as c, open(tls[1], "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    if not port:
        sys.exit("cannot bind 127.0.0.1:0")
    # At once, without waiting for calls still running (a sleep:MS).
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.start()
    print(port, flush=True)
    server.wait_for_termination()
