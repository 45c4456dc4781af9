"""Bounded load test of the model server on loopback: N requests from C concurrent clients, then stop.

    python -m benchmarks.load_test RUN_DIR [-n 2000] [-c 16] [--rounds 1] [--model NAME]
    python -m benchmarks.load_test --url http://127.0.0.1:8000 --model slot_filling -n 500 -c 8

With a run dir it starts ``python -m serving serve`` twice on ephemeral ports of 127.0.0.1, without and with
``--dynamic-batching``, and prints for each: requests, errors, p50 / p99 latency and requests per second
(``--rounds R``: the two take turns R times and the median round is shown, for a machine whose load varies), and
the server's CPU time per request (from /proc): on a shared machine, latency and throughput measure the share of
the CPU the server got as much as its efficiency; CPU time per request measures the work itself. Each
client keeps one HTTP/1.1 connection and sends one input per request (text models: utterances; audio models:
a 1-second WAV; record models: a small story). The exit status is 1 if any request failed.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import math
import os
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["show me flights from boston to denver", "what is the cheapest fare from dallas to atlanta on monday",
         "i need a flight to new york tomorrow morning", "which airlines fly from seattle to san francisco",
         "list ground transportation in pittsburgh", "a gripping, beautifully acted film",
         "the plot is thin and the pacing is dull"]


def sample_inputs(kind: str) -> list:
    """A few JSON-ready inputs of the given input kind."""
    if kind == "audio":
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
            w.writeframes(bytes(2 * 16000))
        return [base64.b64encode(buf.getvalue()).decode()]
    if kind == "record":
        return [{"story": ["mary moved to the bathroom.", "john went to the hallway."], "question": "where is mary?"}]
    return TEXTS


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))] if ordered else float("nan")


def run_load(host: str, port: int, model: str, inputs: list, requests: int, clients: int) -> dict:
    """Sends ``requests`` predict requests from ``clients`` threads; returns latency and throughput figures."""
    latencies, errors, lock = [], [], threading.Lock()
    counter = iter(range(requests))

    def client():
        conn = http.client.HTTPConnection(host, port, timeout=60)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            body = json.dumps({"input": inputs[i % len(inputs)]})
            start = time.perf_counter()
            try:
                conn.request("POST", f"/v1/models/{model}/predict", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                data = response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException) as err:
                ok, data = False, str(err).encode()
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=60)
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                if not ok:
                    errors.append(data[:200])
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"requests": len(latencies), "errors": len(errors), "p50_ms": 1000 * percentile(latencies, 50),
            "p99_ms": 1000 * percentile(latencies, 99), "requests_per_s": len(latencies) / wall, "wall_s": wall,
            "first_error": errors[0].decode("utf-8", "replace") if errors else None}


def cpu_seconds(pid: int | None) -> float | None:
    """CPU time (user + system, all threads) a process has used so far; None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, TypeError):
        return None


def get_json(host: str, port: int, path: str) -> dict:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def start_server(run_dir: str, extra: list[str]) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "serving", "serve", run_dir, "--port", "0",
                             "--reload-interval", "0", *extra], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1].split()[0])


def measure(host: str, port: int, model: str | None, requests: int, clients: int, warmup: int,
            pid: int | None = None) -> tuple[str, dict]:
    models = get_json(host, port, "/v1/models")["models"]
    entry = next((m for m in models if model in (None, m["name"])), None)
    if entry is None:
        raise SystemExit(f"no model {model!r} on the server; it serves {[m['name'] for m in models]}")
    inputs = sample_inputs(entry["input_kind"])
    run_load(host, port, entry["name"], inputs, warmup, clients)
    before = cpu_seconds(pid)
    figures = run_load(host, port, entry["name"], inputs, requests, clients)
    after = cpu_seconds(pid)
    # the server's own CPU time per request: what the work costs, whatever share of a busy machine it got
    figures["server_cpu_ms"] = None if before is None or after is None else 1000 * (after - before) / requests
    return entry["name"], figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", help="a run dir to serve (twice: without and with dynamic batching)")
    parser.add_argument("--url", help="load an already running server instead")
    parser.add_argument("--model", help="the model's name on the server (default: the first)")
    parser.add_argument("-n", "--requests", type=int, default=2000)
    parser.add_argument("-c", "--clients", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=50, help="requests sent first and not counted")
    parser.add_argument("--max-delay-ms", type=float, default=2.0, help="dynamic batching window")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads of the server")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with a run dir: rounds of N requests per mode, the modes taking turns (median shown)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if bool(args.run_dir) == bool(args.url):
        parser.error("give a run dir or --url")

    rows = []
    if args.url:
        url = urlparse(args.url)
        name, figures = measure(url.hostname, url.port or 80, args.model, args.requests, args.clients, args.warmup)
        rows.append(("running server", name, figures))
    else:
        threads = ["--threads", str(args.threads)] if args.threads else []
        modes = (("no batching", []),
                 ("dynamic batching", ["--dynamic-batching", "--max-delay-ms", str(args.max_delay_ms)]))
        servers = [start_server(args.run_dir, threads + extra) for _, extra in modes]
        try:  # the modes take turns, round after round, so that a change in machine load hits both alike
            runs = {label: [] for label, _ in modes}
            for _ in range(args.rounds):
                for (label, _), (proc, port) in zip(modes, servers):
                    name, figures = measure("127.0.0.1", port, args.model, args.requests, args.clients, args.warmup,
                                            proc.pid)
                    runs[label].append(figures)
        finally:
            for proc, _ in servers:
                proc.terminate()
                proc.wait(30)
        for label, figures in runs.items():
            best = sorted(figures, key=lambda f: f["requests_per_s"])[len(figures) // 2]  # the median round
            rows.append((label, name, {**best, "errors": sum(f["errors"] for f in figures),
                                       "rounds_requests_per_s": [round(f["requests_per_s"], 1) for f in figures]}))
    if args.json:
        print(json.dumps([{"mode": label, "model": name, **f} for label, name, f in rows], indent=2))
    else:
        print(f"{args.requests} requests from {args.clients} concurrent clients on loopback")
        print(f"{'mode':<18} {'model':<14} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} "
              f"{'server CPU ms/req':>17}")
        for label, name, f in rows:
            cpu = "n/a" if f.get("server_cpu_ms") is None else f"{f['server_cpu_ms']:.2f}"
            print(f"{label:<18} {name:<14} {f['requests']:>8} {f['errors']:>6} {f['p50_ms']:>8.2f} {f['p99_ms']:>8.2f} "
                  f"{f['requests_per_s']:>8.1f} {cpu:>17}")
        for label, _, f in rows:
            if len(f.get("rounds_requests_per_s", [])) > 1:
                print(f"{label}: requests/s per round {f['rounds_requests_per_s']} (the median round shown)")
        for label, _, f in rows:
            if f["first_error"]:
                print(f"{label}: first error: {f['first_error']}", file=sys.stderr)
    return 1 if any(f["errors"] for _, _, f in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
