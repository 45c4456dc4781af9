"""Load test of the model server with ``wrk``: keep-alive connections from one C thread, so the client takes
almost none of the CPU the server needs.

    python -m benchmarks.load_test slot_filling=RUN_DIR [sentiment=RUN_DIR ...] [-c 1 8 32] [-d 3] [--modes off on]
    python -m benchmarks.load_test --url http://127.0.0.1:8000 --model slot_filling -c 32

For each model and batching mode (``off``: ``--no-dynamic-batching``, each request's ``predict_batch`` in a
worker thread; ``on``: ``--dynamic-batching``, the default), a server (``python -m serving serve``, one model)
is started on an ephemeral port of 127.0.0.1 and loaded for ``-d`` seconds at each connection count after a one-second warm-up; one input per
request to ``POST /v1/models/NAME/predict`` (text: a JSON body; audio: a raw ``audio/wav`` body, the first
``*.wav`` under the run dir or a one-second tone). Prints p50, p99, requests/s and errors (socket errors and
non-2xx answers) as a markdown table, or JSON with ``--json``; the exit status is 1 if any request failed.
Needs ``wrk`` (``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TEXTS = {"slot_filling": "show me flights from boston to denver on monday morning",
         "sentiment": "a gripping , beautifully acted film", "translation": "i like tea ."}

# wrk's Lua hooks: the body from a file, then the figures as one JSON line (latencies in microseconds).
LUA = """
wrk.method = "POST"
local f = io.open(os.getenv("LOAD_BODY"), "rb")
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("LOAD_TYPE")
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %d, "seconds": %f, "p50_us": %d, "p99_us": %d, "errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def tone_wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    samples = (8000 * np.sin(np.arange(int(seconds * rate)) * 2 * np.pi * 440 / rate)).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


def request_body(name: str, run_dir: Path | None, kind: str) -> tuple[bytes, str]:
    """(body, content type) of one predict request for the model."""
    if kind == "audio":
        wavs = sorted(run_dir.rglob("*.wav")) if run_dir else []
        return (wavs[0].read_bytes() if wavs else tone_wav()), "audio/wav"
    if kind == "record":
        record = {"story": ["mary moved to the bathroom.", "john went to the hallway."], "question": "where is mary?"}
        return json.dumps({"input": record}).encode(), "application/json"
    return json.dumps({"input": TEXTS.get(name, TEXTS["slot_filling"])}).encode(), "application/json"


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system, all threads) the process has used so far (0 where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, TypeError):
        return 0.0


def wrk(url: str, body_file: Path, content_type: str, connections: int, seconds: float, script: Path,
        pid: int | None = None) -> dict:
    """One wrk run: its figures (p50 / p99 in ms, requests per second, errors, the server's CPU ms per request:
    what the work costs, whatever share of a busy machine the server got)."""
    cpu = cpu_seconds(pid)
    env = {"LOAD_BODY": str(body_file), "LOAD_TYPE": content_type, "PATH": "/usr/bin:/bin"}
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(script),
               url]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=seconds + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no result:\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line[len("RESULT "):])
    cpu = 1000 * (cpu_seconds(pid) - cpu) / max(1, raw["requests"])
    return {"connections": connections, "p50_ms": raw["p50_us"] / 1000, "p99_ms": raw["p99_us"] / 1000,
            "requests_per_s": raw["requests"] / raw["seconds"], "requests": raw["requests"], "errors": raw["errors"],
            "server_cpu_ms": cpu if pid else None}


def start_server(name: str, run_dir: str, extra: list[str]) -> tuple[subprocess.Popen, int, str]:
    """``python -m serving serve NAME=RUN_DIR`` on a free port: (process, port, the model's input kind)."""
    proc = subprocess.Popen([sys.executable, "-m", "serving", "serve", f"{name}={run_dir}", "--port", "0",
                             "--reload-interval", "0", *extra], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    port = int(line.rsplit(":", 1)[1].split()[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=30) as answer:
        models = json.loads(answer.read())["models"]
    return proc, port, models[0]["input_kind"]


def measure(url: str, body: tuple[bytes, str], connections: list[int], seconds: float, tmp: Path,
            pid: int | None = None) -> list[dict]:
    body_file, script = tmp / "body", tmp / "load.lua"
    body_file.write_bytes(body[0])
    script.write_text(LUA)
    wrk(url, body_file, body[1], max(connections), 1, script)  # warm-up: sessions, caches, threads
    return [wrk(url, body_file, body[1], c, seconds, script, pid) for c in connections]


def run_models(specs: list[str], modes: list[str], connections: list[int], seconds: float, extra: list[str],
               tmp: Path) -> list[dict]:
    rows = []
    for spec in specs:
        name, run_dir = spec.split("=", 1) if "=" in spec else (Path(spec).name, spec)
        for mode in modes:
            flags = extra + (["--dynamic-batching"] if mode == "on" else ["--no-dynamic-batching"])
            proc, port, kind = start_server(name, run_dir, flags)
            try:
                url = f"http://127.0.0.1:{port}/v1/models/{name}/predict"
                body = request_body(name, Path(run_dir), kind)
                figures = measure(url, body, connections, seconds, tmp, proc.pid)
                rows += [{"model": name, "batching": mode, **f} for f in figures]
            finally:
                proc.terminate()
                proc.wait(30)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | batching | connections | p50 ms | p99 ms | requests/s | errors | server CPU ms / request |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['batching']} | {r['connections']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['requests_per_s']:.0f} | {r['errors']} | "
              f"{'n/a' if r['server_cpu_ms'] is None else format(r['server_cpu_ms'], '.2f')} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="NAME=RUN_DIR (or RUN_DIR) of each model to load")
    parser.add_argument("--url", help="load an already running server instead (with --model)")
    parser.add_argument("--model", help="with --url: the model's name on the server")
    parser.add_argument("-c", "--connections", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("-d", "--seconds", type=int, default=3, help="seconds per measurement")
    parser.add_argument("--modes", nargs="+", choices=["off", "on"], default=["off", "on"],
                        help="dynamic batching off, on")
    parser.add_argument("--server-args", default="", help="more flags for `serving serve`, e.g. '--threads 1'")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    if bool(args.models) == bool(args.url):
        parser.error("give run dirs or --url")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        if args.url:
            url = f"{args.url.rstrip('/')}/v1/models/{args.model}/predict"
            rows = [{"model": args.model, "batching": "?", **f} for f in
                    measure(url, request_body(args.model, None, "text"), args.connections, args.seconds, Path(tmp))]
        else:
            rows = run_models(args.models, args.modes, args.connections, args.seconds, args.server_args.split(),
                              Path(tmp))
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
