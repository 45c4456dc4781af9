"""Syntactic parsing as translation: ``python -m pipelines.parsing [--data-dir DIR] [--quick]``.

"Grammar as a foreign language" (Vinyals et al. 2015): the seq2seq machine with attention reads the words of a
sentence and writes its tree linearised depth-first, ``(S (NP XX XX )NP (VP XX (NP XX )NP )VP )S``. Decoded
greedily and by beam search under the tree constraints (``serving/constraints.py``: every output well-formed) and
without them (repaired into a valid tree when ill-formed), and scored by labelled bracket F1 as EVALB with
COLLINS.prm does (punctuation and the root ignored, ADVP = PRT), beside the rate of well-formed outputs, on the
whole test split and on its sentences of at most 25 words. The classical baseline, a PCFG induced from the same
training trees and parsed by CKY (``pipelines/pcfg_baseline.py``), is measured in the same run.

Data: sentences of a small probabilistic context-free grammar by default, or the Penn Treebank sample given with
``--data-dir`` (the folder holding ``treebank.zip``), split by file as ../shared/data/SPLITS.md fixes.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import sys

import pipelines  # noqa: F401  (quiet TensorFlow, Keras backend)
from pipelines.readers import DataError
from pipelines.seq2seq import Seq2SeqConfig, Seq2SeqTask
from pipelines.task import Context
from pipelines.treebank import ParseExample

TASK = "parsing"
DEMO = "the old man saw a dog in the park ."


@dataclasses.dataclass(frozen=True)
class ParsingConfig(Seq2SeqConfig):
    out: str = dataclasses.field(default="runs/parsing", metadata={"help": "run dir to write"})
    epochs: int = dataclasses.field(default=10, metadata={"help": "most epochs (early stopping may end sooner)"})
    hidden: int = dataclasses.field(default=64, metadata={"help": "encoder units per direction"})
    batch_size: int = dataclasses.field(default=32, metadata={"help": "examples per batch (and replica)"})
    max_len: int = dataclasses.field(
        default=60, metadata={"help": "longest sentence in words (longer: dropped from training, refused in serving)"})
    max_target_len: int = dataclasses.field(
        default=200, metadata={"help": "longest linearised tree in tokens (decoding guard: also 3 per word + 16)"})
    rare_words: int = dataclasses.field(
        default=1, metadata={"help": "training words seen this often or less are read by their shape class"})
    synthetic_size: int = dataclasses.field(default=2000, metadata={"help": "built-in training sentences"})
    word_pointer: bool = dataclasses.field(
        default=True, metadata={"help": "feed the decoder the encoding of the next word to place (after each XX)"})
    decode_batch: int = dataclasses.field(default=64, metadata={"help": "sentences per decoding batch"})
    pcfg_baseline: bool = dataclasses.field(
        default=True, metadata={"help": "also induce a PCFG from the training trees and parse the test split with CKY "
                                        "(the classical baseline: pipelines/pcfg_baseline.py)"})
    weights: str | None = dataclasses.field(
        default=None, metadata={"help": "trained weights (a run's model.weights.h5 or checkpoints/train.weights.h5, "
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


def score(predictor, examples: list[ParseExample], results: list) -> dict:
    """Bracket F1 and the rates of well-formed and finished outputs of parsed ``examples``, and the F1 on those of
    at most 25 words (``f1_le25``)."""
    from pipelines.pcfg_baseline import SHORT
    from serving import trees

    predicted = [trees.read_tree(r.tree) for r in results]
    result = trees.score([ex.tree for ex in examples], predicted, [r.well_formed for r in results])
    short = [i for i, ex in enumerate(examples) if len(ex.words) <= SHORT]
    subset = trees.score([examples[i].tree for i in short], [predicted[i] for i in short])
    return {"f1": result.f1, "precision": result.precision, "recall": result.recall,
            "well_formed": result.well_formed, "exact_match": result.exact_match,
            "finished": sum(r.finished for r in results) / len(results), "f1_le25": subset.f1}


class Parsing(Seq2SeqTask):
    """Words → linearised tree; the dev token accuracy picks the epoch, test bracket F1 is reported."""

    name = TASK
    config_class = ParsingConfig
    demo_input = DEMO

    def data(self, config):
        return load_data(config)

    def pairs(self, ctx: Context):
        known = known_words(ctx.splits["train"], ctx.config.rare_words)
        return {name: to_pairs(examples, known) for name, examples in ctx.splits.items()}

    def extra_meta(self, ctx: Context) -> dict:
        return {"parsing": {"linearization": "depth-first, (L ... )L, words as XX", "max_output": "3 * words + 16",
                            "unknown_words": "shape classes (serving.parsing)", "constrained": True}}

    def pointer_id(self, ctx: Context) -> int:
        """``XX``'s id with ``--word-pointer``: each decoder input then also carries the next word's encoding."""
        from serving.trees import WORD

        return ctx.prep.target_vocab.index(WORD) if ctx.config.word_pointer else 0

    def predictor_class(self):
        from serving.parsing import ParsingPredictor

        return ParsingPredictor

    def fit(self, ctx: Context):
        """Trains; with ``--weights``, loads those weights instead (no training).

        Raises:
          DataError: the weights file is missing or does not fit the model (other data or sizes).
        """
        from pathlib import Path

        weights = ctx.config.weights
        if not weights:
            return super().fit(ctx)
        if not Path(weights).is_file():
            raise DataError(f"--weights: no such file: {weights}")
        models = self.build_model(ctx)
        try:
            models.trainer.load_weights(weights)
        except ValueError as err:
            raise DataError(f"--weights {weights} does not fit this model (other data or sizes?): "
                            f"{str(err).splitlines()[0]}") from None
        print(f"loaded the weights of {weights} (no training)")
        return models

    def decode_batch(self, ctx: Context) -> int:
        return ctx.config.decode_batch

    def parse(self, ctx: Context, predictor, examples: list[ParseExample], beam_size: int, record: bool = True):
        """Parse results of ``examples`` (the predictor's tokens, decoding and tree repair)."""
        token_lists = [predictor.tokens(ex.text, f"sentence {i}") for i, ex in enumerate(examples)]
        hyps = self.decode(ctx, predictor, token_lists, beam_size, record)
        return [predictor.make_result(ex.text, tokens, hyp, beam_size)
                for ex, tokens, hyp in zip(examples, token_lists, hyps)]

    def evaluate(self, ctx: Context, models) -> dict:
        """Bracket F1 on test, greedy and beam, constrained (the main figures: ``greedy_*``, ``beam_*``) and
        unconstrained (``unconstrained_greedy_*``, ``unconstrained_beam_*``), each also on the sentences of at most
        25 words (``*_f1_le25``); greedy on dev; the PCFG baseline (``pcfg_*``). Keras decoding through the
        serving predictor; the constrained decodings are the ones onnxruntime must reproduce after the export.
        The first test parses go to ``examples.json``."""
        from pipelines.pcfg_baseline import SHORT

        c, test = ctx.config, ctx.splits["test"]
        constrained, free = self.keras_predictor(ctx, models), self.keras_predictor(ctx, models)
        free.constrained = False
        metrics, parses = {}, {}
        for name, predictor, beam in (("greedy", constrained, 1), ("beam", constrained, c.beam_size),
                                      ("unconstrained_greedy", free, 1), ("unconstrained_beam", free, c.beam_size)):
            parses[name] = self.parse(ctx, predictor, test, beam, record=predictor is constrained)
            metrics.update({f"{name}_{k}": v for k, v in score(predictor, test, parses[name]).items()})
        dev = score(constrained, ctx.splits["valid"],
                    self.parse(ctx, constrained, ctx.splits["valid"], 1, record=False))
        examples = [{"text": r.text, "tree": r.tree, "well_formed": r.well_formed, "gold": str(ex.tree)}
                    for r, ex in zip(parses["greedy"][:20], test)]
        (ctx.run_dir / "examples.json").write_text(json.dumps(examples, indent=2, ensure_ascii=False) + "\n")
        return {
            "f1": metrics["greedy_f1"], "well_formed": metrics["greedy_well_formed"],
            "f1_le25": metrics["greedy_f1_le25"], **metrics,
            "beam_size": c.beam_size,
            "dev_greedy_f1": dev["f1"],
            "test_sentences": len(test),
            "test_sentences_le25": sum(len(ex.words) <= SHORT for ex in test),
            "train_sentences": len(ctx.splits["train"]),
            "parameters": models.trainer.count_params(),
            **self.pcfg_figures(ctx),
        }

    def pcfg_figures(self, ctx: Context) -> dict:
        """The classical baseline on the same data (``--pcfg-baseline``): a PCFG induced from the training trees
        (the same known words), CKY on the test split; F1 whole and on sentences of at most 25 words, seconds."""
        c = ctx.config
        if not c.pcfg_baseline:
            return {}
        from pipelines.pcfg_baseline import baseline

        out = baseline(ctx.splits, c.rare_words, c.max_len)
        test = out["test"]
        print(f"PCFG + CKY baseline: test F1 {test['f1']:.3f} ({test['f1_le25']:.3f} on sentences of <= 25 words), "
              f"{out['rules']} binary rules, {out['induce_seconds'] + test['seconds']:.0f} s")
        return {"pcfg_f1": test["f1"], "pcfg_precision": test["precision"], "pcfg_recall": test["recall"],
                "pcfg_f1_le25": test["f1_le25"], "pcfg_parsed": test["parsed"], "pcfg_rules": out["rules"],
                "pcfg_seconds": round(out["induce_seconds"] + test["seconds"], 1)}

    def ort_figures(self, decodings: dict) -> dict:
        (total, differ, greedy_seconds), (_, beam_differ, beam_seconds) = decodings[1], decodings[max(decodings)]
        return {"ort_keras_greedy_identical": (total - differ) / total,
                "ort_keras_beam_identical": (total - beam_differ) / total,
                "greedy_decode_seconds": round(greedy_seconds, 1), "beam_decode_seconds": round(beam_seconds, 1)}


PARSING = Parsing()


def run(config: ParsingConfig) -> dict:
    """Trains, evaluates on the test split, exports; returns the metrics. The run dir appears only when all
    succeeded."""
    return PARSING.run(config)


def main(argv: list[str] | None = None) -> int:
    return PARSING.main(argv)


if __name__ == "__main__":
    sys.exit(main())
