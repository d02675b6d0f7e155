"""Single-order ingestion over HTTP, counting everything: identity, points, tier, idempotency.

Starts ``quanyu serve`` on a fresh database (SQLite or PostgreSQL), sends orders one
request each from C concurrent keep-alive clients, and reports orders/s with p50/p99
latency. On PostgreSQL, ``pgbench -c 8 -j 2 -T 30`` runs against the same server in the
same run, and the result is given as a ratio of its TPS.

The load comes from wrk (Debian package ``wrk``; a C load generator, as pgbench is a C
client) with ``benchmarks/wrk_orders.lua``, or, with ``--loader python`` or when wrk is
not installed, from Python threads, which take a share of the same two cores.

    uv run python -m benchmarks.http_orders --backend postgres --seconds 30
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

from benchmarks.common import fresh_database, machine, order_dict, pgbench_tps, seed_brand

PORT = 8765


def wait_ready(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def load(seconds: float, clients: int, tag: str = "C") -> tuple[int, list[float], int]:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        rng = random.Random(k)
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        i = 0
        while time.monotonic() < stop:
            body = json.dumps(order_dict(i, rng, prefix=f"{tag}{k}-")).encode()
            t0 = time.perf_counter()
            conn.request("POST", "/api/v1/orders", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            latencies[k].append(time.perf_counter() - t0)
            if response.status != 201:
                errors[k] += 1
            i += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    flat = [x for part in latencies for x in part]
    return len(flat), flat, sum(errors)


LUA = os.path.join(os.path.dirname(__file__), "wrk_orders.lua")


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise RuntimeError(f"wrk printed an unknown latency: {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def wrk_load(
    seconds: float,
    clients: int,
    *,
    tag: str = "C",
    path: str = "/api/v1/orders",
    method: str = "POST",
) -> dict[str, float]:
    """Run wrk against the server; orders/s, p50 and p99 in ms, and non-2xx responses."""
    done = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{clients}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            LUA,
            f"http://127.0.0.1:{PORT}",
            "--",
            tag,
            path,
            method,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    out = done.stdout
    if "Requests/sec" not in out or "99%" not in out:
        raise RuntimeError(f"wrk printed no result:\n{out}\n{done.stderr}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rate": rate,
        "p50_ms": p50,
        "p99_ms": p99,
        "errors": float(bad.group(1)) if bad else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--workers", type=int, default=None, help="default: 2 on PostgreSQL, 1 on SQLite"
    )
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--no-pgbench", action="store_true", help="skip the pgbench baseline")
    parser.add_argument("--loader", choices=["wrk", "python"], default=None)
    args = parser.parse_args()

    if args.workers is None:
        args.workers = 1 if args.backend == "sqlite" else 2
    url = fresh_database(args.backend)
    seed_brand(url, members_count=args.members).engine.dispose()
    env = {**os.environ, "QUANYU_DATABASE_URL": url, "QUANYU_PORT": str(PORT)}
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from quanyu.entrypoints.cli import main; main()",
            "serve",
            "--port",
            str(PORT),
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
    )
    loader = args.loader or ("wrk" if shutil.which("wrk") else "python")
    try:
        wait_ready(PORT)
        if loader == "wrk":
            wrk_load(3, args.clients, tag="W")  # warm up
            measured = wrk_load(args.seconds, args.clients)
            rate, p50, p99, errors = (
                measured["rate"],
                measured["p50_ms"],
                measured["p99_ms"],
                int(measured["errors"]),
            )
            count = round(rate * args.seconds)
        else:
            load(3, args.clients, tag="W")  # warm up
            count, latencies, errors = load(args.seconds, args.clients)
            rate = count / args.seconds
            q = statistics.quantiles(latencies, n=100)
            p50, p99 = q[49] * 1000, q[98] * 1000
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = {
        "benchmark": "http single-order ingestion",
        "backend": args.backend,
        "loader": loader,
        "clients": args.clients,
        "workers": args.workers,
        "seconds": args.seconds,
        "orders": count,
        "errors": errors,
        "orders_per_s": round(rate, 1),
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
        "machine": machine(),
    }
    if args.backend == "postgres" and not args.no_pgbench:
        tps = pgbench_tps(seconds=args.seconds)
        result["pgbench_tps"] = round(tps, 1)
        result["ratio_to_pgbench"] = round(rate / tps, 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
