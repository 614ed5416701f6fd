"""Enrich orders from an HTTP service with the I/O lane: 32 lookups in flight, in order.

Shows: an ``AsyncMiddleware`` (``async def process``) with ``concurrency = 32`` calling a
local HTTP service (the standard library's ``http.server``, started in a thread); answers
arrive out of order yet the output keeps source order; a ``RetryPolicy`` that retries
"503 busy" answers with backoff; a customer the service does not know goes to the DLQ
once, with its error; ``explain()`` and the run summary showing the lane, its peak in
flight, retries and latency percentiles.

Run:  python examples/enrich_http.py [--out DIR]   (default ./example-output/enrich_http)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agora import (AsyncMiddleware, DeliveryConfig, IterableSource, JsonLinesDLQSink,
                   JsonLinesSink, Pipeline, RetryPolicy)

UNKNOWN_CUSTOMER = 13


class CustomerService(BaseHTTPRequestHandler):
    """``GET /customers/<id>``: JSON after a random 1–20 ms; 404 for customer 13; a 503
    "busy" on the first request for every 10th customer."""

    asked: set[int] = set()
    lock = threading.Lock()

    def do_GET(self) -> None:  # noqa: N802 (the http.server hook name)
        cid = int(self.path.rsplit("/", 1)[-1])
        time.sleep(random.uniform(0.001, 0.02))
        with self.lock:
            first = cid not in self.asked
            self.asked.add(cid)
        if cid == UNKNOWN_CUSTOMER:
            self._reply(404, {"error": f"no customer {cid}"})
        elif cid % 10 == 0 and first:
            self._reply(503, {"error": "busy"})
        else:
            self._reply(200, {"customer_id": cid, "tier": "gold" if cid % 3 == 0 else "basic"})

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # keep the example's output quiet
        pass


class Server(ThreadingHTTPServer):
    # Room for every lookup in flight: the default backlog of 5 makes the rest wait for
    # a TCP retransmit (about a second) — a throughput cliff that looks like a slow service.
    request_queue_size = 64
    daemon_threads = True


class ServiceBusy(ConnectionError):
    """A 503: transient, worth another attempt (ConnectionError is an OSError)."""


async def get_json(host: str, port: int, path: str) -> dict[str, Any]:
    """A minimal HTTP/1.0 GET on asyncio streams (a real job would use its HTTP client)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if status == 503:
        raise ServiceBusy(f"GET {path}: 503 busy")
    if status != 200:
        raise LookupError(f"GET {path}: {status} {body.decode()}")
    result: dict[str, Any] = json.loads(body)
    return result


class EnrichWithCustomer(AsyncMiddleware):
    concurrency = 32
    retry = RetryPolicy(attempts=3, backoff_s=0.01, transient=(ConnectionError,))

    def __init__(self, port: int) -> None:
        self.name = "customers"
        self.port = port

    async def process(self, order: dict[str, Any], ctx: Any) -> dict[str, Any]:
        customer = await get_json("127.0.0.1", self.port, f"/customers/{order['customer_id']}")
        return {**order, "tier": customer["tier"]}


def build(out: Path, port: int):
    orders = [{"order_id": i, "customer_id": i % 40} for i in range(200)]
    return (Pipeline(IterableSource(orders, name="orders"), id="enrich-orders")
            .pipe(EnrichWithCustomer(port))
            .build(JsonLinesSink(out / "orders.jsonl"),
                   delivery=DeliveryConfig(dlq=JsonLinesDLQSink(out / "dlq.jsonl"))))


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    server = Server(("127.0.0.1", 0), CustomerService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        job = build(out, server.server_address[1])
        print(job.explain())   # customers: I/O lane, up to 32 in flight
        print(job.run_sync())  # 195 written, 5 orders of customer 13 dead-lettered
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("example-output/enrich_http"))
    main(parser.parse_args().out)
