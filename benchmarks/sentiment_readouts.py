"""Word vs character input and the three read-outs, side by side, on rt-polarity (or the built-in data).

    python benchmarks/sentiment_readouts.py --data-dir ../shared/data/rt-polarity [--tokens word,char]
        [--readouts last,mean,attention] [--out runs/sentiment_readouts] [-- extra pipelines.sentiment flags]

Trains one run per combination with ``pipelines.sentiment`` (same settings otherwise), then prints a table of
dev and test accuracy, parameters and training time, and writes it to ``OUT/table.json``. Settings are chosen on
dev; the test column is read only to report.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.readers import DataError  # noqa: E402
from pipelines.sentiment import SentimentConfig, run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="rt-polarity folder; none: built-in data")
    parser.add_argument("--tokens", "--units", dest="tokens", default="word,char", help="(--units: the old name)")
    parser.add_argument("--readouts", default="last,mean,attention")
    parser.add_argument("--out", default="runs/sentiment_readouts")
    parser.add_argument("--epochs", type=int, default=SentimentConfig.epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    out = Path(args.out)
    rows = []
    for tokens in args.tokens.split(","):
        for readout in args.readouts.split(","):
            config = SentimentConfig(data_dir=args.data_dir, out=str(out / f"{tokens}_{readout}"), tokens=tokens,
                                     readout=readout, epochs=args.epochs, seed=args.seed, quick=args.quick)
            try:
                metrics = run(config)
            except DataError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
            rows.append({"tokens": tokens, "readout": readout, **{k: metrics[k] for k in (
                "dev_accuracy", "accuracy", "parameters", "train_seconds")},
                "settings": dataclasses.asdict(config.resolved())})
            (out / "table.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| tokens | read-out | dev accuracy | test accuracy | parameters | training time |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['tokens']} | {r['readout']} | {r['dev_accuracy']:.3f} | {r['accuracy']:.3f} | "
              f"{r['parameters']:,} | {r['train_seconds'] / 60:.1f} min |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
