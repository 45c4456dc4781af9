"""Scores an exported key-term model as it is served (onnxruntime through ``serving``) on an Inspec split, beside
the TF-IDF n-gram baseline; no TensorFlow is loaded.

    python benchmarks/key_terms_inspec.py runs/key_terms_inspec --data-dir ../shared/data/keyphrase-inspec
    python benchmarks/key_terms_inspec.py runs/key_terms_inspec --split valid --threshold 0.4 --merge noisy_or

Prints F1@5, F1@10 and F1@M (Porter-stemmed exact match, macro-averaged over documents) against all gold phrases
and against the present ones only, and the time ``predict_batch`` took. ``--threshold`` and ``--merge`` override
the decoding settings stored in the model (to choose them on the dev split without retraining).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import serving  # noqa: E402
from pipelines.inspec import read_inspec  # noqa: E402
from pipelines.keyphrases import TfidfBaseline, gold_keys, line_breaks, phrase_key, score_rankings  # noqa: E402
from pipelines.readers import DataError  # noqa: E402
from serving.doc_tokenizer import DocTokenizer  # noqa: E402
from serving.key_terms import MERGES  # noqa: E402

SHOWN = ("f1_at_5", "f1_at_10", "f1_at_m", "present_f1_at_5", "present_f1_at_10", "present_f1_at_m")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a run dir or a .onnx file")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/keyphrase-inspec"))
    parser.add_argument("--split", default="test", choices=("valid", "test"))
    parser.add_argument("--threshold", type=float, help="override the model's decoding threshold")
    parser.add_argument("--merge", choices=MERGES, help="override the model's merge rule")
    args = parser.parse_args()
    try:
        splits = read_inspec(args.data_dir)
        predictor = serving.load(args.model)
        predictor.threshold = args.threshold if args.threshold is not None else predictor.threshold
        predictor.merge = args.merge or predictor.merge
        docs = splits[args.split]
        started = time.perf_counter()
        results = predictor.predict_batch([d.text for d in docs])
        seconds = time.perf_counter() - started
    except (DataError, serving.ServingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    tokenize = DocTokenizer()
    words = lambda text: [t.text for t in tokenize(text)]
    gold = [gold_keys(words(d.text), [words(p) for p in d.keyphrases]) for d in docs]
    gold_all, gold_present = [g[0] for g in gold], [g[1] for g in gold]
    baseline = TfidfBaseline().fit((words(d.text), line_breaks(d.text, tokenize(d.text))) for d in splits["train"])
    systems = {
        f"served RNN (threshold {predictor.threshold}, {predictor.merge})":
            [[phrase_key(t.term) for t in r.terms] for r in results],
        "TF-IDF n-grams": [[k for k, _ in baseline.rank(words(d.text), line_breaks(d.text, tokenize(d.text)))]
                           for d in docs],
    }
    print(f"{args.model}: {args.split}, {len(docs)} documents, predict_batch {seconds:.2f} s, "
          f"{sum(r.windows > 1 for r in results)} read in several windows")
    label = lambda name: name.replace('present_', 'present ').replace('f1_at_', 'F1@').replace('@m', '@M')
    print(f"{'':<40}" + "".join(f"{label(name):>18}" for name in SHOWN))
    for name, ranked in systems.items():
        scores = score_rankings(ranked, gold_all, gold_present)
        print(f"{name:<40}" + "".join(f"{scores[k]:>18.4f}" for k in SHOWN)
              + f"   ({scores['predicted_per_document']} terms per document)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
