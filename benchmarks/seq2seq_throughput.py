"""Seq2seq decoding throughput: onnxruntime (encoder.onnx + decoder_step.onnx, numpy loop) next to Keras step-by-step
decoding of the same graphs, in one run, on the same sentences.

    python benchmarks/seq2seq_throughput.py RUN_DIR [--sentences 256] [--batch 32] [--beam 4] [--threads 1]

RUN_DIR is a finished seq2seq run (e.g. runs/translation). Inputs are its parity source batches, repeated up to
``--sentences``. Reported per engine: output tokens per second (``</s>`` counted), sentences per second, and
whether ORT's greedy outputs equal Keras' token for token. Keras runs the same numpy loop (serving.beam) with the
decoder called eagerly and as a compiled tf.function.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _tokens(hyps) -> int:
    return sum(len(h.ids) + int(h.finished) for h in hyps)


def _timed(decode, batches):
    started = time.perf_counter()
    hyps = [h for ids in batches for h in decode(ids)]
    return hyps, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime and TensorFlow intra-op threads")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import serving
    from export.parity import load_batches
    from pipelines.seq2seq import END_ID, START_ID, keras_encode, keras_step, load_models
    from serving.beam import beam_search, greedy

    run_dir = Path(args.run_dir)
    predictor = serving.load(run_dir, threads=args.threads)
    models, meta = load_models(run_dir)
    sources = [row[row != 0] for b in load_batches(run_dir / "parity_encoder.npz") for row in b["source_ids"]]
    sources = [sources[i % len(sources)] for i in range(args.sentences)]
    batches = []
    for i in range(0, len(sources), args.batch):
        chunk = sources[i: i + args.batch]
        ids = np.zeros((len(chunk), max(len(s) for s in chunk)), np.int32)
        for r, s in enumerate(chunk):
            ids[r, : len(s)] = s
        batches.append(ids)
    max_len = predictor.max_target_len
    common = dict(start_id=START_ID, end_id=END_ID, max_len=max_len)

    eager = keras_step(models)
    compiled_step = tf.function(models.decoder_step, reduce_retracing=True)

    class Compiled:  # keras_step over the tf.function-compiled decoder
        spec = models.spec
        decoder_step = staticmethod(lambda feeds, training=False: compiled_step(feeds, training=False))

    compiled = keras_step(Compiled)
    engines = {
        "onnxruntime greedy": lambda ids: predictor.decode_states(predictor.encode_ids(ids), 1),
        "keras eager greedy": lambda ids: greedy(eager, keras_encode(models, ids), len(ids), **common),
        "keras tf.function greedy": lambda ids: greedy(compiled, keras_encode(models, ids), len(ids), **common),
        f"onnxruntime beam {args.beam}": lambda ids: predictor.decode_states(predictor.encode_ids(ids), args.beam),
        f"keras tf.function beam {args.beam}": lambda ids: beam_search(compiled, keras_encode(models, ids), len(ids),
                                                                       beam_size=args.beam, **common),
    }
    engines["keras tf.function greedy"](batches[0])  # trace once, outside the timing
    rows, outputs = [], {}
    for name, decode in engines.items():
        hyps, seconds = _timed(decode, batches)
        outputs[name] = [h.ids for h in hyps]
        rows.append({"engine": name, "tokens_per_s": round(_tokens(hyps) / seconds, 1),
                     "sentences_per_s": round(len(hyps) / seconds, 1), "seconds": round(seconds, 2)})
    same = outputs["onnxruntime greedy"] == outputs["keras eager greedy"] == outputs["keras tf.function greedy"]
    print(f"{run_dir} ({meta['task']}, {meta['model']['cell']}, attention {meta['attention']}): {len(sources)} "
          f"sentences, batch {args.batch}, {args.threads} thread(s), max {max_len} output tokens")
    print(f"{'engine':34} {'tokens/s':>10} {'sentences/s':>12} {'seconds':>8}")
    for row in rows:
        print(f"{row['engine']:34} {row['tokens_per_s']:>10} {row['sentences_per_s']:>12} {row['seconds']:>8}")
    print(f"ORT greedy == Keras greedy token for token: {same}")
    (run_dir / "throughput.json").write_text(json.dumps({"rows": rows, "ort_equals_keras": same,
                                                          "sentences": len(sources), "batch": args.batch,
                                                          "threads": args.threads}, indent=2) + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
