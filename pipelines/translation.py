"""Translation with the seq2seq machine: ``python -m pipelines.translation [--data-dir DIR] [--attention ...] [--quick]``.

The encoder reads the English sentence (tensorflow-text words) into its memory; the decoder writes the output one
symbol at a time (Chinese characters, or digits for the built-in pair), each fed back as its next input, until it
emits the end symbol ``</s>``. Evaluated by BLEU (sacrebleu, its ``zh`` tokenizer) on the test split, greedy and
beam search side by side; the export's encoder.onnx + decoder_step.onnx decode the same sentences with onnxruntime.

Data: a built-in synthetic pair (English number words → digits, "three hundred forty two" → "342") by default, or
Tatoeba English–Chinese (``cmn.txt``) with ``--data-dir``, split as ../shared/data/SPLITS.md fixes.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
from pathlib import Path

import pipelines  # noqa: F401  (quiet TensorFlow, Keras backend)
from pipelines.seq2seq import Seq2SeqConfig, Seq2SeqTask
from pipelines.task import Context

TASK = "translation"
DEMO = "four thousand six hundred twelve"


@dataclasses.dataclass(frozen=True)
class TranslationConfig(Seq2SeqConfig):
    out: str = dataclasses.field(default="runs/translation", metadata={"help": "run dir to write"})
    synthetic_size: int = dataclasses.field(default=4000, metadata={"help": "built-in training pairs"})
    examples: int = dataclasses.field(default=8, metadata={"help": "example translations shown"})
    heatmaps: int = dataclasses.field(default=3, metadata={"help": "sentences in attention.png"})
    eval_limit: int = dataclasses.field(default=0, metadata={"help": "most test pairs decoded; 0: all"})
    max_train: int = dataclasses.field(default=0, metadata={"help": "most training pairs (the first ones; dev is cut "
                                                                    "to a tenth of it); 0: all"})

    def resolved(self) -> "TranslationConfig":
        """``--quick`` shrinks the model, the data and the epochs."""
        if not self.quick:
            return self
        return dataclasses.replace(self, epochs=min(self.epochs, 4), hidden=32, embed_dim=32, attention_units=32,
                                   synthetic_size=min(self.synthetic_size, 1500), learning_rate=1e-2,
                                   saved_model=False, eval_limit=self.eval_limit or 200)


# --------------------------------------------------------------------------------------------------------------------
# The built-in pair: English number words → digits

ONES = "zero one two three four five six seven eight nine".split()
TEENS = "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """0 ≤ n < 1,000,000 in English words, without "and" or hyphens: 4612 → "four thousand six hundred twelve"."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"{n} is out of range")
    if n < 10:
        return ONES[n]
    if n < 20:
        return TEENS[n - 10]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        return ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + number_words(n % 100))
    return number_words(n // 1000) + " thousand" + ("" if n % 1000 == 0 else " " + number_words(n % 1000))


def synthetic_splits(size: int, seed: int = 0) -> dict[str, list[tuple[str, str]]]:
    """Distinct random numbers below 100,000 (small ones more often) as (words, digits) pairs: ``size`` for
    training, ``size // 10`` each for dev and test, no number in two splits."""
    rng = random.Random(seed)
    total = size + 2 * max(size // 10, 20)
    numbers: list[int] = []
    seen: set[int] = set()
    while len(numbers) < total:
        n = rng.randrange(10 ** rng.randint(1, 5))
        if n not in seen:
            seen.add(n)
            numbers.append(n)
    pairs = [(number_words(n), str(n)) for n in numbers]
    held = max(size // 10, 20)
    return {"train": pairs[:size], "valid": pairs[size: size + held], "test": pairs[size + held:]}


# --------------------------------------------------------------------------------------------------------------------
# Evaluation


def bleu(hypotheses: list[str], references: list[str], tokenize: str = "zh") -> float:
    """Corpus BLEU with sacrebleu: ``zh`` (each CJK character a token, other text split as 13a) for Chinese,
    ``char`` for the built-in digits (where ``zh`` would make each whole number one token)."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(hypotheses, [references], tokenize=tokenize).score)


def heatmap(path: Path, items: list[tuple[list[str], list[str], list[list[float]]]]) -> None:
    """Writes one attention heat-map per (source tokens, output tokens, weights) into one PNG. CJK glyphs need a
    CJK font; without one the output axis shows code points (U+4F60)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.font_manager as fm
    import matplotlib.pyplot as plt
    import numpy as np

    has_cjk = any(k in f.name for f in fm.fontManager.ttflist for k in ("CJK", "WenQuanYi", "Hei", "Ming"))

    def label(token: str) -> str:
        if has_cjk or all(ord(ch) < 0x2E80 for ch in token):
            return token
        return " ".join(f"U+{ord(ch):04X}" for ch in token)

    fig, axes = plt.subplots(1, len(items), figsize=(4.5 * len(items), 4.5), squeeze=False)
    for ax, (source, output, weights) in zip(axes[0], items):
        w = np.asarray(weights)
        ax.imshow(w, cmap="viridis", aspect="auto", vmin=0, vmax=1)
        ax.set_xticks(range(len(source)), source, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(w.shape[0]), [label(t) for t in output] + ["</s>"][: w.shape[0] - len(output)],
                      fontsize=8)
        ax.set_xlabel("source")
        ax.set_ylabel("output")
    fig.suptitle("attention weights (each row: one output symbol over the source words)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def data_source(config: TranslationConfig) -> str:
    return "synthetic" if config.data_dir is None else "tatoeba"


def load_data(config: TranslationConfig) -> dict:
    """The (English, target) text pairs per split; ``--max-train`` keeps the first training pairs (Tatoeba's file
    runs from short to long sentences) and a tenth as many dev pairs (at least 100)."""
    if config.data_dir is None:
        splits = synthetic_splits(config.synthetic_size, config.seed)
    else:
        from pipelines.tatoeba import read_tatoeba

        splits = read_tatoeba(config.data_dir)
    if config.max_train:
        splits = {**splits, "train": splits["train"][: config.max_train],
                  "valid": splits["valid"][: max(config.max_train // 10, 100)]}
    return splits


class Translation(Seq2SeqTask):
    """English words → target characters; the dev token accuracy picks the epoch, test BLEU is reported."""

    name = TASK
    config_class = TranslationConfig
    demo_input = DEMO
    source_kind, target_kind = "word", "char"

    def data(self, config):
        return load_data(config)

    def pairs(self, ctx: Context):
        from pipelines.seq2seq import tokenize

        return {name: list(zip(tokenize([en for en, _ in split], self.source_kind),
                               tokenize([zh for _, zh in split], self.target_kind)))
                for name, split in ctx.splits.items() if name != "test"}

    def extra_meta(self, ctx: Context) -> dict:
        return {"data": data_source(ctx.config)}

    def predictor_class(self):
        from serving.translation import TranslationPredictor

        return TranslationPredictor

    def evaluate(self, ctx: Context, models) -> dict:
        """BLEU and exact match, greedy and beam (Keras decoding through the serving predictor), example
        translations (``examples.json``) and the attention heat-maps (``attention.png``)."""
        import numpy as np

        from pipelines.seq2seq import tokenize
        from serving.seq2seq import detokenize
        from serving.tokenizer import case_fold

        c = ctx.config
        test = ctx.splits["test"][: c.eval_limit or None]
        sources = tokenize([en for en, _ in test], self.source_kind)
        keep = [i for i, s in enumerate(sources) if s]
        sources = [sources[i] for i in keep]
        references = [case_fold(test[i][1]) for i in keep]  # the targets were NFKC case-folded for training too
        predictor = self.keras_predictor(ctx, models)
        out = {beam: self.decode(ctx, predictor, sources, beam) for beam in (1, c.beam_size)}
        texts = {beam: [detokenize(predictor.output_tokens(h), predictor.detokenizer) for h in hyps]
                 for beam, hyps in out.items()}
        bleu_tokenize = "zh" if data_source(c) == "tatoeba" else "char"
        metrics = {
            "bleu_greedy": round(bleu(texts[1], references, bleu_tokenize), 2),
            f"bleu_beam{c.beam_size}": round(bleu(texts[c.beam_size], references, bleu_tokenize), 2),
            "exact_greedy": float(np.mean([h == r for h, r in zip(texts[1], references)])),
            "exact_beam": float(np.mean([h == r for h, r in zip(texts[c.beam_size], references)])),
            "unfinished_greedy": sum(not h.finished for h in out[1]),
            "test_pairs": len(sources),
            "attention": {"none": 0, "additive": 1, "dot": 2}[c.attention],
            "beam_size": c.beam_size,
            "parameters": models.trainer.count_params(),
        }
        examples = [{"source": test[i][0], "reference": test[i][1], "greedy": texts[1][k],
                     f"beam{c.beam_size}": texts[c.beam_size][k]} for k, i in enumerate(keep[: c.examples])]
        (ctx.run_dir / "examples.json").write_text(json.dumps(examples, indent=2, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
        print("\nexample translations (test split):")
        for ex in examples:
            print(f"  {ex['source']}\n    reference: {ex['reference']}\n    greedy:    {ex['greedy']}\n"
                  f"    beam {c.beam_size}:    {ex[f'beam{c.beam_size}']}")
        if c.attention != "none" and c.heatmaps:
            items = []
            longer = [k for k in range(len(sources)) if len(sources[k]) >= 4]  # more to see than in "Hi."
            for k in (longer or list(range(len(sources))))[: c.heatmaps]:
                hyp = out[c.beam_size][k]
                if hyp.attention is not None:
                    items.append((sources[k], predictor.output_tokens(hyp),
                                  [row[: len(sources[k])] for row in hyp.attention.tolist()]))
            if items:
                heatmap(ctx.run_dir / "attention.png", items)
                print(f"attention heat-maps: {Path(c.out) / 'attention.png'}")
        return metrics


TRANSLATION = Translation()


def run(config: TranslationConfig) -> dict:
    """Trains, evaluates, exports; returns the metrics. The run dir appears only when all succeeded."""
    return TRANSLATION.run(config)


def main(argv: list[str] | None = None) -> int:
    return TRANSLATION.main(argv)


if __name__ == "__main__":
    sys.exit(main())
