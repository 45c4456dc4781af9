"""Command line: ``python -m serving predict RUN_DIR_OR_ONNX "text" ["text" ...]``."""

from __future__ import annotations

import argparse
import json
import sys

import serving


def _show(result) -> str:
    if isinstance(result, serving.KeyTermsResult):
        lines = [result.text if len(result.text) <= 100 else result.text[:100] + "...",
                 f"  {len(result.tokens)} tokens, {result.windows} window{'s' if result.windows > 1 else ''}"]
        lines += [f"  {i}. {t.term} ({t.score:.3f}) at " + ", ".join(f"{a}-{b}" for a, b in t.offsets)
                  for i, t in enumerate(result.terms, 1)] or ["  (no key terms)"]
        return "\n".join(lines)
    if isinstance(result, serving.SentimentResult):
        lines = [result.text, f"  {result.label} ({result.confidence:.3f})"]
        if result.truncated:
            lines.append(f"  (truncated to the first {len(result.tokens)} tokens)")
        if result.attention:
            top = sorted(result.attention, key=lambda tw: -tw[1])[:5]
            lines.append("  attention: " + ", ".join(f"{t} {w:.2f}" for t, w in top))
        return "\n".join(lines)
    lines = [result.text, f"  intent: {result.intent} ({result.intent_confidence:.3f})"]
    lines += [f"  {name}: {text}" for name, text in result.slots] or ["  (no slots)"]
    if result.unknown_words:
        lines.append(f"  unknown words: {' '.join(result.unknown_words)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="predict texts with an exported model")
    predict.add_argument("model", help="a run dir or a .onnx file")
    predict.add_argument("texts", nargs="*", help="inputs; none or '-' reads one per line from stdin")
    predict.add_argument("--json", action="store_true", help="print one JSON object per input")
    args = parser.parse_args(argv)

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
        print(json.dumps(result.to_dict(), ensure_ascii=False) if args.json else _show(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
