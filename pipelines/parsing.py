"""Syntactic parsing as translation: ``python -m pipelines.parsing [--data-dir DIR] [--quick]``.

"Grammar as a foreign language" (Vinyals et al. 2015): the seq2seq machine with attention reads the words of a
sentence and writes its tree linearised depth-first, ``(S (NP XX XX )NP (VP XX (NP XX )NP )VP )S``. Decoded
greedily and by beam search (onnxruntime), repaired into a valid tree when ill-formed, and scored by labelled
bracket F1 as EVALB with COLLINS.prm does (punctuation and the root ignored, ADVP = PRT), beside the rate of
well-formed outputs.

Data: sentences of a small probabilistic context-free grammar by default, or the Penn Treebank sample given with
``--data-dir`` (the folder holding ``treebank.zip``), split by file as ../shared/data/SPLITS.md fixes.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import sys
import time

import pipelines  # noqa: F401  (quiet TensorFlow, Keras backend)
from pipelines.config import run_command_line
from pipelines.readers import DataError
from pipelines.seq2seq import CHOICES, Seq2SeqConfig
from pipelines.treebank import ParseExample

TASK = "parsing"
DEMO = "the old man saw a dog in the park ."


@dataclasses.dataclass(frozen=True)
class ParsingConfig(Seq2SeqConfig):
    out: str = dataclasses.field(default="runs/parsing", metadata={"help": "run dir to write"})
    epochs: int = dataclasses.field(default=10, metadata={"help": "most epochs (early stopping may end sooner)"})
    hidden: int = dataclasses.field(default=64, metadata={"help": "encoder units per direction"})
    batch_size: int = 32
    max_source_len: int = dataclasses.field(
        default=60, metadata={"help": "longest sentence in words (longer: dropped from training, refused in serving)"})
    max_target_len: int = dataclasses.field(
        default=200, metadata={"help": "longest linearised tree in tokens (decoding guard: also 3 per word + 16)"})
    rare_words: int = dataclasses.field(
        default=1, metadata={"help": "training words seen this often or less are read by their shape class"})
    synthetic_size: int = dataclasses.field(default=2000, metadata={"help": "built-in training sentences"})
    decode_batch: int = dataclasses.field(default=64, metadata={"help": "sentences per decoding batch"})
    weights: str | None = dataclasses.field(
        default=None, metadata={"help": "trained weights (a run's model.weights.h5 or checkpoints/best.weights.h5, "
                                        "same data and sizes) to export and evaluate instead of training"})

    def check(self) -> None:
        super().check()
        if self.rare_words < 0 or self.synthetic_size < 10 or self.decode_batch < 1:
            raise DataError("--rare-words must not be negative, --synthetic-size at least 10, --decode-batch >= 1")

    def resolved(self) -> "ParsingConfig":
        """``--quick`` shrinks the data, the model and the epochs to a seconds-long smoke run."""
        if not self.quick:
            return self
        return dataclasses.replace(self, epochs=min(self.epochs, 2), hidden=32, embed_dim=32, attention_units=32,
                                   synthetic_size=min(self.synthetic_size, 400), patience=1, beam_size=2)


def load_data(config: ParsingConfig) -> dict[str, list[ParseExample]]:
    if config.data_dir is None:
        from pipelines.pcfg import synthetic_splits

        return synthetic_splits(config.synthetic_size, seed=config.seed)
    from pipelines.treebank import read_treebank

    splits = read_treebank(config.data_dir)
    if config.quick:
        splits = {name: examples[: 400 if name == "train" else 60] for name, examples in splits.items()}
    return splits


def known_words(train: list[ParseExample], rare_words: int) -> set[str]:
    """The training words seen more than ``rare_words`` times: the others are read by their shape class, so the
    unknown-word classes are trained."""
    counts = collections.Counter(w for ex in train for w in ex.words)
    return {w for w, n in counts.items() if n > rare_words}


def to_pairs(examples: list[ParseExample], known: set[str]) -> list[tuple[list[str], list[str]]]:
    """(source tokens, target tokens) pairs: words (rare ones by shape class) → linearised tree."""
    from serving.parsing import source_tokens

    return [(source_tokens(ex.words, known), list(ex.target)) for ex in examples]


def export_trained(config: ParsingConfig, run_dir, pairs: dict, extra_meta: dict):
    """``train_and_export`` without the training: the same vocabularies and graphs, the weights read from
    ``config.weights``, then the same export.

    Raises:
      DataError: the weights file is missing or does not fit the model (other data or sizes).
    """
    from pathlib import Path

    from export.seq2seq_export import export_seq2seq
    from models.seq2seq import build_seq2seq
    from pipelines import seq2seq as s2s

    train = s2s.keep_fitting(pairs["train"], config)
    valid = s2s.keep_fitting(pairs["valid"], config) or train[:200]
    source_vocab = s2s.build_vocab([s for s, _ in train], config.min_count)
    target_vocab = s2s.build_vocab([t for _, t in train], config.min_count)
    s2s.write_vocabularies(run_dir, source_vocab, target_vocab)
    models = build_seq2seq(s2s.model_spec(config, len(source_vocab), len(target_vocab)))
    if not Path(config.weights).is_file():
        raise DataError(f"--weights: no such file: {config.weights}")
    try:
        models.trainer.load_weights(config.weights)
    except ValueError as err:
        raise DataError(f"--weights {config.weights} does not fit this model (other data or sizes?): "
                        f"{str(err).splitlines()[0]}") from None
    models.trainer.save_weights(Path(run_dir) / s2s.WEIGHTS_FILE)
    sources = [s2s.pad(s2s.to_ids([s for s, _ in valid[i: i + 16]], source_vocab)) for i in range(0, 64, 16)
               if valid[i: i + 16]]
    meta = s2s.task_metadata(config, TASK, source_vocab, target_vocab, "whitespace", "whitespace")
    meta = export_seq2seq(models, run_dir, {**meta, **extra_meta}, sources, start_id=s2s.START_ID,
                          saved_model=config.saved_model)
    print(f"exported the weights of {config.weights} (no training)")
    return s2s.Trained(models, source_vocab, target_vocab, Path(run_dir), meta, 0.0)


def evaluate(predictor, examples: list[ParseExample], beam_size: int, batch: int) -> tuple[dict, list]:
    """Parses ``examples`` with the ORT predictor and scores them. Returns (metrics, results)."""
    from serving import trees

    results = []
    for start in range(0, len(examples), batch):
        chunk = examples[start: start + batch]
        results += predictor.predict_batch([ex.text for ex in chunk], beam_size=beam_size, batch_size=batch)
    predicted = [trees.read_tree(r.tree) for r in results]
    score = trees.score([ex.tree for ex in examples], predicted, [r.well_formed for r in results])
    metrics = {
        "f1": score.f1, "precision": score.precision, "recall": score.recall, "well_formed": score.well_formed,
        "exact_match": score.exact_match, "finished": sum(r.finished for r in results) / len(results),
    }
    return metrics, results


def ort_matches_keras(trained, predictor, examples: list[ParseExample], batch: int) -> tuple[int, int]:
    """Greedy decoding of ``examples`` with onnxruntime and with the Keras graphs, batch by batch with the same
    padding and length guard. Returns (sentences whose outputs are identical token for token, sentences)."""
    from pipelines.seq2seq import keras_decode
    from serving.parsing import max_output_len

    same = 0
    for start in range(0, len(examples), batch):
        words = [list(ex.words) for ex in examples[start: start + batch]]
        max_len = min(predictor.max_target_len, max_output_len(max(map(len, words))))
        ort = predictor.decode_tokens(words, 1, max_len)
        keras = keras_decode(trained.models, predictor.source_ids(words), max_len=max_len)
        same += sum(a.ids == b.ids and a.finished == b.finished for a, b in zip(ort, keras))
    return same, len(examples)


def run(config: ParsingConfig) -> dict:
    """Trains, exports, evaluates on the test split; returns the metrics. The run dir appears only when all
    succeeded."""
    from pipelines import training
    from pipelines.seq2seq import train_and_export
    from serving.parsing import ParsingPredictor
    from serving.seq2seq import load_run

    config.check()
    config = config.resolved()
    splits = load_data(config)
    with training.task_run(config, TASK) as run_dir:
        known = known_words(splits["train"], config.rare_words)
        pairs = {name: to_pairs(examples, known) for name, examples in splits.items()}
        extra_meta = {"parsing": {"linearization": "depth-first, (L ... )L, words as XX",
                                  "max_output": "3 * words + 16", "unknown_words": "shape classes (serving.parsing)"}}
        if config.weights:
            trained = export_trained(config, run_dir, pairs, extra_meta)
        else:
            trained = train_and_export(config, run_dir, pairs, task=TASK, source_kind="whitespace",
                                       target_kind="whitespace", extra_meta=extra_meta)
        predictor = load_run(trained.run_dir, {TASK: ParsingPredictor})
        test = splits["test"]
        started = time.time()
        greedy, greedy_results = evaluate(predictor, test, 1, config.decode_batch)
        greedy_seconds = time.time() - started
        started = time.time()
        beam, _ = evaluate(predictor, test, config.beam_size, config.decode_batch)
        beam_seconds = time.time() - started
        same, total = ort_matches_keras(trained, predictor, test, config.decode_batch)
        dev, _ = evaluate(predictor, splits["valid"], 1, config.decode_batch)

        metrics = {
            "f1": greedy["f1"], "well_formed": greedy["well_formed"],
            **{f"greedy_{k}": v for k, v in greedy.items()},
            **{f"beam_{k}": v for k, v in beam.items()},
            "beam_size": config.beam_size,
            "dev_greedy_f1": dev["f1"],
            "ort_keras_greedy_identical": same / total,
            "test_sentences": len(test),
            "train_sentences": len(splits["train"]),
            "parameters": trained.models.trainer.count_params(),
            "train_seconds": round(trained.train_seconds, 1),
            "greedy_decode_seconds": round(greedy_seconds, 1),
            "beam_decode_seconds": round(beam_seconds, 1),
        }
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        examples = [{"text": r.text, "tree": r.tree, "well_formed": r.well_formed, "gold": str(ex.tree)}
                    for r, ex in zip(greedy_results[:20], test)]
        (run_dir / "examples.json").write_text(json.dumps(examples, indent=2, ensure_ascii=False) + "\n")
        if same != total:
            print(f"warning: onnxruntime and Keras greedy outputs differ on {total - same} of {total} test sentences")
    return metrics


def main(argv: list[str] | None = None) -> int:
    config, metrics = run_command_line(
        ParsingConfig, run, argv, module_doc=__doc__, prog="python -m pipelines.parsing",
        choices=CHOICES)
    if metrics is None:
        return 2

    import serving

    demo = DEMO if config.data_dir is None else "Mr. Vinken is chairman of Elsevier N.V. , the Dutch publishing group ."
    result = serving.load(config.out).predict(demo)
    print(f"\nonnxruntime, {config.out}:\n  {demo}\n  → {result.tree}"
          f"{'' if result.well_formed else '  (repaired)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
