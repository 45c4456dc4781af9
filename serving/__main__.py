"""Command line of serving.

    python -m serving predict RUN_DIR_OR_ONNX "text" ["text" ...] [--json]     # a few inputs, printed
    python -m serving predict RUN_DIR --input file.txt|dir_of_wavs --output out.jsonl   # batch, resumable
    python -m serving serve RUN_DIR [NAME=RUN_DIR ...] --port 8000 [--no-dynamic-batching]  # HTTP model server
"""

from __future__ import annotations

import argparse
import json
import sys

import serving


def _predict_batch_file(args) -> int:
    from serving.batch_predict import predict_file

    if not args.output:
        print("error: --input needs --output FILE.jsonl", file=sys.stderr)
        return 2
    try:
        predictor = serving.load(args.model)
        stats = predict_file(predictor, args.input, args.output, batch_size=args.batch_size,
                             progress=not args.no_progress)
    except serving.ServingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.output}: {stats['written']} written ({stats['errors']} errors), {stats['skipped']} already there, "
          f"{stats['total']} inputs", file=sys.stderr)
    return 0


def _serve(args) -> int:
    import logging
    import socket

    from serving.batcher import DynamicBatcher
    from serving.registry import Limits, Registry

    try:  # FastAPI and uvicorn are needed here only
        import uvicorn

        from serving.server import Metrics, create_app
    except ImportError as err:
        print(f"error: the server needs fastapi and uvicorn ({err}); pip install -r requirements.txt", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    metrics = Metrics()
    make_batcher = None
    if args.dynamic_batching:
        def make_batcher(predictor, name):
            return DynamicBatcher(predictor.predict_batch, args.max_batch_size, args.max_delay_ms,
                                  on_batch=lambda n: metrics.batch(name, n), name=name, workers=args.batch_workers)
    try:
        registry = Registry(args.models, make_batcher=make_batcher, threads=args.threads)
    except serving.ServingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    limits = Limits(max_body_bytes=args.max_body_bytes, max_batch=args.max_batch, max_text_chars=args.max_text_chars,
                    max_audio_seconds=args.max_audio_seconds)
    app = create_app(registry, limits, metrics)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as err:
        print(f"error: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 2
    sock.listen(2048)
    sock.set_inheritable(True)
    config = uvicorn.Config(app, log_level=args.log_level, timeout_graceful_shutdown=args.graceful_timeout,
                            limit_concurrency=args.max_concurrency or None, access_log=args.access_log)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):  # readiness turns 503 as soon as a stop signal arrives
            app.state.draining = True
            super().handle_exit(sig, frame)

    server = Server(config)
    registry.watch(args.reload_interval)
    port = sock.getsockname()[1]
    print(f"serving {', '.join(f'{e.name} ({e.task})' for e in registry.entries())} on http://{args.host}:{port}"
          f"{' with dynamic batching' if args.dynamic_batching else ''}", flush=True)
    server.run(sockets=[sock])
    registry.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="predict inputs with an exported model")
    predict.add_argument("model", help="a run dir or a .onnx file")
    predict.add_argument("texts", nargs="*", help="inputs; none or '-' reads one per line from stdin")
    predict.add_argument("--json", action="store_true", help="print one JSON object per input")
    predict.add_argument("--input", help="batch mode: a text file (one input per line), a folder of .txt or .wav "
                                         "files, or a JSON-lines file of records")
    predict.add_argument("--output", help="batch mode: the JSON-lines file to write (re-run to resume)")
    predict.add_argument("--batch-size", type=int, default=64, help="batch mode: inputs per onnxruntime call")
    predict.add_argument("--no-progress", action="store_true", help="batch mode: no progress bar")

    serve = commands.add_parser("serve", help="serve models over HTTP (FastAPI + uvicorn)")
    serve.add_argument("models", nargs="+", help="run dirs or .onnx files, each PATH or NAME=PATH")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed on the first line)")
    serve.add_argument("--dynamic-batching", action=argparse.BooleanOptionalAction, default=True,
                       help="gather concurrent requests of a model into one onnxruntime call (on by default: it "
                            "wins under load and waits only when more requests are coming; docs/serving.md)")
    serve.add_argument("--max-batch-size", type=int, default=32, help="dynamic batching: most inputs per call")
    serve.add_argument("--max-delay-ms", type=float, default=5.0, help="dynamic batching: longest wait for more")
    serve.add_argument("--batch-workers", type=int, default=2,
                       help="dynamic batching: batches of one model that may run at once")
    serve.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024, help="limit: request body size")
    serve.add_argument("--max-batch", type=int, default=64, help="limit: inputs per request")
    serve.add_argument("--max-text-chars", type=int, default=10_000, help="limit: characters per text input")
    serve.add_argument("--max-audio-seconds", type=float, default=30.0, help="limit: seconds per audio input")
    serve.add_argument("--max-concurrency", type=int, default=0,
                       help="connections+requests at once before answering 503 (0: no limit)")
    serve.add_argument("--threads", type=int, default=1,
                       help="onnxruntime intra-op threads per model (1: concurrent requests use the cores, without "
                            "onnxruntime's spinning pool stealing them from HTTP work; 0: one per core)")
    serve.add_argument("--reload-interval", type=float, default=2.0,
                       help="seconds between checks of the model files for hot reload (0: off)")
    serve.add_argument("--graceful-timeout", type=float, default=30.0,
                       help="seconds in-flight requests may take to finish after SIGTERM/SIGINT")
    serve.add_argument("--log-level", default="warning")
    serve.add_argument("--access-log", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "serve":
        return _serve(args)
    if args.input:
        return _predict_batch_file(args)
    texts = args.texts
    if not texts or texts == ["-"]:
        texts = [line.rstrip("\n") for line in sys.stdin]
    if not texts:
        print("error: no input texts (give them as arguments, or one per line on stdin)", file=sys.stderr)
        return 2
    try:
        predictor = serving.load(args.model)
        results = predictor.predict_batch(texts)
    except serving.ServingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for result in results:
        print(json.dumps(result.to_dict(), ensure_ascii=False) if args.json else result)  # str(result): readable
    return 0


if __name__ == "__main__":
    sys.exit(main())
