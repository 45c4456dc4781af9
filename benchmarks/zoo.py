"""The model zoo: typical users' Keras recurrent models (not our tasks' models) through ``export_keras_model``.

    python benchmarks/zoo.py [--only NAME,...] [--runs 50] [--out FILE]

For every model (random weights; ids 1..vocab right-padded with 0 where an Embedding masks, normal floats
otherwise): the route the export took (native, or tf2onnx and why), the graph's node and Loop/Scan counts, the
parity against Keras (max |onnx - keras| / max(1, |keras|) on batches of 1, 5 and 32, lengths 1..12), and the
best-of-N latency at batch 1 and 32 (length 12) of onnxruntime on our graph, against the same model as a tf.function,
as Keras' own ``model.export(format="onnx")`` graph on onnxruntime, and as our tf2onnx graph on onnxruntime. One
intra-op thread everywhere (onnxruntime and TensorFlow), so the figures do not depend on the machine's load as
much. Prints one markdown table; ``--out`` also writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

from benchmarks.cells_serving import latency_ms  # noqa: E402

L = keras.layers
VOCAB, EMBED, UNITS, FEATURES, CLASSES = 2000, 64, 64, 40, 5


# --------------------------------------------------------------------------------------------------------------------
# The zoo: each builder returns a functional model


def _ids(name="ids"):
    return keras.Input((None,), dtype="int32", name=name)


def _embedded(ids, mask_zero=True):
    return L.Embedding(VOCAB, EMBED, mask_zero=mask_zero)(ids)


def _classifier(body, mask_zero=True):
    """ids → Embedding → body → Dense softmax."""
    ids = _ids()
    return keras.Model(ids, L.Dense(CLASSES, activation="softmax")(body(_embedded(ids, mask_zero))))


def _attention_classifier(attend):
    """ids → Embedding(mask_zero) → LSTM(sequences) → attend(h) → GlobalAveragePooling1D → Dense."""
    def body(x):
        h = L.LSTM(UNITS, return_sequences=True)(x)
        return L.GlobalAveragePooling1D()(attend(h))
    return _classifier(body)


def _seq2seq(cell, embedded: bool):
    """keras-io's teacher-forced encoder-decoder: the encoder's final states start the decoder."""
    if embedded:
        enc_in, dec_in = _ids("encoder"), _ids("decoder")
        enc_x, dec_x = _embedded(enc_in, False), _embedded(dec_in, False)
    else:
        enc_in = enc_x = keras.Input((None, FEATURES), name="encoder")
        dec_in = dec_x = keras.Input((None, FEATURES), name="decoder")
    _, *states = cell(UNITS, return_state=True)(enc_x)
    h = cell(UNITS, return_sequences=True)(dec_x, initial_state=states)
    return keras.Model([enc_in, dec_in], L.Dense(VOCAB if embedded else FEATURES, activation="softmax")(h))


def _tagger_masking():
    x = keras.Input((None, FEATURES), name="frames")
    h = L.GRU(UNITS, return_sequences=True)(L.Masking(0.0)(x))
    return keras.Model(x, L.TimeDistributed(L.Dense(10, activation="softmax"))(h))


def _conv_front_end():
    x = keras.Input((None, FEATURES), name="frames")
    h = L.Conv1D(64, 5, padding="causal", dilation_rate=2, activation="relu")(x)
    h = L.Bidirectional(L.GRU(UNITS, return_sequences=True))(L.BatchNormalization()(h))
    return keras.Model(x, L.Dense(30, activation="softmax")(h))


ZOO = {
    "lstm_classifier": lambda: _classifier(lambda x: L.LSTM(UNITS)(x)),
    "bigru_classifier": lambda: _classifier(lambda x: L.Bidirectional(L.GRU(UNITS))(x)),
    "stacked_lstm": lambda: _classifier(lambda x: L.LSTM(UNITS)(L.LSTM(UNITS, return_sequences=True)(x))),
    "dropout_lstm": lambda: _classifier(lambda x: L.Dropout(0.5)(L.LSTM(UNITS)(L.SpatialDropout1D(0.2)(x)))),
    "masking_gru_tagger": _tagger_masking,
    "bilstm_tagger": lambda: _classifier(
        lambda x: L.Bidirectional(L.LSTM(UNITS, return_sequences=True))(x)),
    "conv_maxpool_lstm": lambda: _classifier(
        lambda x: L.LSTM(UNITS)(L.MaxPooling1D(2)(L.Conv1D(64, 5, padding="same", activation="relu")(x))),
        mask_zero=False),
    "causal_conv_bigru": _conv_front_end,
    "gru_global_max": lambda: _classifier(lambda x: L.GlobalMaxPooling1D()(L.GRU(UNITS, return_sequences=True)(x))),
    "bigru_global_avg": lambda: _classifier(
        lambda x: L.GlobalAveragePooling1D()(L.Bidirectional(L.GRU(UNITS, return_sequences=True))(x))),
    "lstm_layernorm": lambda: _classifier(
        lambda x: L.GlobalAveragePooling1D()(L.LayerNormalization()(L.LSTM(UNITS, return_sequences=True)(x)))),
    "lstm_dot_attention": lambda: _attention_classifier(lambda h: L.Attention()([h, h])),
    "gru_additive_attention": lambda: _attention_classifier(lambda h: L.AdditiveAttention()([h, h])),
    "lstm_multihead_attention": lambda: _attention_classifier(lambda h: L.MultiHeadAttention(2, 16)(h, h)),
    "rnn_lstmcell": lambda: _classifier(lambda x: L.RNN(L.LSTMCell(UNITS))(x)),
    "rnn_stacked_cells": lambda: _classifier(
        lambda x: L.RNN(L.StackedRNNCells([L.GRUCell(UNITS), L.GRUCell(UNITS)]))(x)),
    "seq2seq_lstm_onehot": lambda: _seq2seq(L.LSTM, embedded=False),
    "seq2seq_gru_embedding": lambda: _seq2seq(L.GRU, embedded=True),
}


# --------------------------------------------------------------------------------------------------------------------
# Measuring one model


def _best_ms(fn, runs: int) -> float:
    """The best of ``runs`` timed calls after two warm-up calls, in ms (on a shared machine the steadier figure)."""
    return latency_ms(fn, runs)[0]


def _session(proto_or_path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    data = proto_or_path if isinstance(proto_or_path, str) else proto_or_path.SerializeToString()
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _ort_ms(session, model, feeds: dict, runs: int) -> float:
    names = [i.name for i in session.get_inputs()]
    ordered = [feeds[t.name] for t in model.inputs]  # by name where the graph kept Keras' names, else in order
    by_name = {n: feeds[n] if n in feeds else ordered[i] for i, n in enumerate(names)}
    return _best_ms(lambda: session.run(None, by_name), runs)


def _keras_export(model, tmp: Path):
    """Keras' own ONNX export (tf2onnx inside) as an onnxruntime session, or None with the reason."""
    path = tmp / "keras_export.onnx"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from export.quiet import captured_stderr

            with captured_stderr():
                model.export(str(path), format="onnx", verbose=False)
    except Exception as err:  # noqa: BLE001  (a figure missing from the table, not a failed run)
        return None, f"{type(err).__name__}: {str(err).splitlines()[0][:80]}"
    return _session(str(path)), None


def measure(name: str, model, runs: int) -> dict:
    import tensorflow as tf

    from export.onnx_export import serving_function, tf2onnx_convert
    from export.user_model import export_keras_model, parity_batches

    result = export_keras_model(model)
    batches = parity_batches(model)
    one, large = batches[0][0], batches[-1][0]
    row = {"model": name, "route": result.route, "reason": result.reason, "nodes": result.nodes,
           "loops": result.loops, "parity": result.parity}
    ours = _session(result.proto)
    row["ort_b1"], row["ort_b32"] = (_ort_ms(ours, model, feeds, runs) for feeds in (one, large))
    function = serving_function(model)
    tensors = [tf.constant(one[t.name]) for t in model.inputs]
    row["tf_function_b1"] = _best_ms(lambda: function(*tensors), runs)
    with tempfile.TemporaryDirectory() as tmp:
        keras_session, row["keras_export_error"] = _keras_export(model, Path(tmp))
    row["keras_export_b1"] = _ort_ms(keras_session, model, one, runs) if keras_session else None
    tf2onnx = tf2onnx_convert(model) if result.route == "native" else result.proto
    row["tf2onnx_b1"] = _ort_ms(_session(tf2onnx), model, one, runs)
    return row


# --------------------------------------------------------------------------------------------------------------------
# The table

HEADER = ["model", "route", "nodes", "Loop/Scan", "parity", "ort b1 ms", "ort b32 ms", "tf.function b1 ms",
          "Keras export b1 ms", "tf2onnx b1 ms", "vs tf.function", "vs Keras export", "vs tf2onnx"]


def _ratio(other, ours) -> str:
    return "n/a" if other is None else f"{other / ours:.1f}x"


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        keras_ms = "n/a" if r["keras_export_b1"] is None else f"{r['keras_export_b1']:.3f}"
        cells = [r["model"], r["route"], str(r["nodes"]), str(r["loops"]), f"{r['parity']:.1e}",
                 f"{r['ort_b1']:.3f}", f"{r['ort_b32']:.3f}", f"{r['tf_function_b1']:.3f}", keras_ms,
                 f"{r['tf2onnx_b1']:.3f}", _ratio(r["tf_function_b1"], r["ort_b1"]),
                 _ratio(r["keras_export_b1"], r["ort_b1"]), _ratio(r["tf2onnx_b1"], r["ort_b1"])]
        lines.append("| " + " | ".join(cells) + " |")
    fallbacks = [f"- {r['model']}: {r['reason']}" for r in rows if r["reason"]]
    failed = [f"- {r['model']}: Keras' export failed ({r['keras_export_error']})" for r in rows
              if r["keras_export_error"]]
    return "\n".join(lines + ([""] + fallbacks if fallbacks else []) + ([""] + failed if failed else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated zoo names (default: all): " + ", ".join(ZOO))
    parser.add_argument("--runs", type=int, default=100, help="timed runs per figure (the best is kept)")
    parser.add_argument("--out", help="also write the figures here (JSON)")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(ZOO)
    unknown = [n for n in names if n not in ZOO]
    if unknown:
        parser.error(f"unknown zoo models {unknown}; choose from {', '.join(ZOO)}")
    import onnxruntime as ort
    import tensorflow as tf

    import pipelines  # noqa: F401  (quiet TensorFlow)

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rows = []
    for name in names:
        keras.utils.set_random_seed(0)
        rows.append(measure(name, ZOO[name](), args.runs))
        print(f"{name}: {rows[-1]['route']}, ort b1 {rows[-1]['ort_b1']:.3f} ms", file=sys.stderr, flush=True)
    print(f"\nzoo: {len(rows)} models, onnxruntime {ort.__version__}, tensorflow {tf.__version__}, keras "
          f"{keras.__version__}, 1 thread; best of {args.runs} runs in ms, length 12 (batch 32: lengths 1..12)\n")
    print(table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
