"""Native ONNX emitters for the naive-Bayes n-gram path (``models.ngrams``), registered with
``export.registry.emits``: the n-gram keys as int64 Pad / Slice / Mul / Add, the exact lookup of the keys seen in
training as an ``ai.onnx.ml`` LabelEncoder (key → table row, 0 when unseen), the tables as Gather + ReduceSum, and the
log-linear mix as Log + Softmax: the same maths as the Keras layers."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from export.registry import ML_DOMAIN, emits
from models.ngrams import LogLinearMix, NaiveBayesNgrams


@emits(NaiveBayesNgrams)
def _naive_bayes(g, layer, call):
    hint = layer.name
    ids = g.op("Cast", [call.first.name], hint, to=TensorProto.INT64)
    time = g.unsqueeze(g.gather(g.op("Shape", [ids], hint), 1, 0, hint), [0], hint)  # [1]
    axis = g.const(np.array([1], np.int64), f"{hint}_axis")
    zero = g.const(np.int64(0), f"{hint}_zero")

    def summed(table, rows, real):  # in float64, as the Keras layer: padding never changes a score
        scores = g.op("Gather", [g.const(np.asarray(table, np.float32), f"{hint}_table"), rows], hint)
        scores = g.op("Cast", [scores], hint, to=TensorProto.DOUBLE)
        weight = g.unsqueeze(g.op("Cast", [real], hint, to=TensorProto.DOUBLE), [2], hint)
        return g.reduce("ReduceSum", g.op("Mul", [scores, weight], hint), [1], hint)

    real = g.op("Not", [g.op("Equal", [ids, zero], hint)], hint)
    total = summed(layer.unigrams, ids, real)
    for n, (keys, table) in enumerate(zip(layer.keys, layer.tables), start=2):
        padded = g.op("Pad", [ids, g.const(np.array([0, 0, 0, n - 1], np.int64), f"{hint}_pads")], hint)

        def window(k):  # the k-th token of every n-gram: padded[:, k:k + time]
            start = g.const(np.array([k], np.int64), f"{hint}_start")
            return g.op("Slice", [padded, start, g.op("Add", [start, time], hint), axis], hint)

        grams = window(0)
        for k in range(1, n):
            grams = g.op("Add", [g.op("Mul", [grams, g.const(np.int64(layer.vocab_size), f"{hint}_base")], hint),
                                 window(k)], hint)
        known = np.asarray(keys)[1:].astype(np.int64)  # without UNSEEN
        if len(known):
            rows = g.op("LabelEncoder", [grams], hint, domain=ML_DOMAIN, keys_int64s=known.tolist(),
                        values_int64s=list(range(1, len(known) + 1)), default_int64=0)
        else:
            rows = g.op("Mul", [grams, zero], hint)
        real = g.op("Not", [g.op("Equal", [window(n - 1), zero], hint)], hint)
        total = g.op("Add", [total, summed(table, rows, real)], hint)
    return [(g.op("Cast", [total], hint, to=TensorProto.FLOAT), None)]


@emits(LogLinearMix)
def _log_linear_mix(g, layer, call):
    hint = layer.name
    probs, scores = (v.name for v in call.first)
    floor = g.const(np.float32(layer.FLOOR), f"{hint}_floor")
    log_p = g.op("Log", [g.op("Max", [probs, floor], hint)], hint)
    logits = g.op("Add", [g.op("Mul", [log_p, g.const(np.float32(layer.weight_probs.numpy()), f"{hint}_a")], hint),
                          g.op("Mul", [scores, g.const(np.float32(layer.weight_scores.numpy()), f"{hint}_b")], hint)],
                  hint)
    logits = g.op("Add", [logits, g.const(np.asarray(layer.bias, np.float32), f"{hint}_bias")], hint)
    return [(g.op("Softmax", [logits], hint, axis=-1), None)]
