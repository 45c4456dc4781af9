"""Leave-one-speaker-out (LOSO) table for CTC digit recognition on FSDD (issue 22): one fold per speaker.

    nice -n 10 python -m benchmarks.speech_loso --data-dir ../shared/data/fsdd/recordings --out runs/speech_loso \
        --max-minutes 25 [--speakers george,theo] [--official runs/speech_ctc_fsdd] [--report-only] \
        [any pipelines.speech_ctc flag, passed through: --baseline-minutes 6 --speed-perturb 0.1 --vtlp 0.1 ...]

Each fold runs ``python -m pipelines.speech_ctc --data-dir DIR --test-speakers SPEAKER --out OUT/fold_SPEAKER
--max-minutes M`` plus the flags passed through: trained on the other four speakers (train: file index 10-49, dev
5-9), tested on every recording of SPEAKER (500 digit-string utterances made from them, and each of the 500
recordings decoded alone for ``single_digit_accuracy``); the frame-wise + trimming baseline trains beside it unless
``--no-baseline`` is passed. A fold whose OUT/fold_SPEAKER/metrics.json exists is not run again, and a killed
fold resumes from OUT/fold_SPEAKER.resume/ (so running the command again finishes the table). Its output is also
written to OUT/fold_SPEAKER.log.

OUT/table.md and OUT/table.json hold per speaker and the mean: CTC digit error (greedy), single digits right, CTC
utterance accuracy, trimming digit error (and its single digits), and with ``--official RUN_DIR`` the
speaker-dependent test split's figures of that run beside them. Targets (issue 22): mean LOSO digit error <= 5 %,
no fold above 10 %, single digits >= 95 % right.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# flags the benchmark sets per fold → the benchmark option to use instead
OWNED = {"--test-speakers": "--speakers", "--out": "--out", "--data-dir": "--data-dir", "--max-minutes": "--max-minutes"}
COLUMNS = (  # (metrics.json key, header); every value a fraction, shown in %
    ("symbol_error_rate", "CTC digit error (greedy)"),
    ("single_digit_accuracy", "single digits right"),
    ("utterance_accuracy", "CTC utterance accuracy"),
    ("framewise_symbol_error_rate", "trimming digit error"),
    ("framewise_single_digit_accuracy", "trimming single digits right"),
)
TARGETS = {"mean_digit_error": 0.05, "worst_fold_digit_error": 0.10, "single_digit_accuracy": 0.95}


def fold_dir(out: Path, speaker: str) -> Path:
    return out / f"fold_{speaker}"


def fold_command(data_dir: str, speaker: str, out: Path, max_minutes: float, extra: list[str]) -> list[str]:
    """The ``pipelines.speech_ctc`` command line of one fold."""
    return [sys.executable, "-m", "pipelines.speech_ctc", "--data-dir", data_dir, "--test-speakers", speaker,
            "--out", str(fold_dir(out, speaker)), "--max-minutes", str(max_minutes), *extra]


def check_extra(extra: list[str]) -> None:
    """Refuses passed-through flags that the benchmark sets per fold, and stray positional words."""
    for arg in extra:
        name = arg.split("=", 1)[0]
        if name in OWNED:
            raise SystemExit(f"error: {name} is set by the benchmark per fold; use the benchmark's {OWNED[name]}")
    if extra and not extra[0].startswith("--"):
        raise SystemExit(f"error: unexpected argument {extra[0]!r} (pipeline flags start with --)")


def run_fold(command: list[str], log: Path) -> int:
    """Runs one fold, its output both shown and written to ``log``; returns the exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as sink, subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                  text=True, bufsize=1) as proc:
        sink.write("$ " + " ".join(command) + "\n")
        for line in proc.stdout:
            sys.stdout.write(line)
            sink.write(line)
    return proc.returncode


def read_metrics(run_dir: Path) -> dict | None:
    path = run_dir / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _percent(value) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def summarize(folds: dict[str, dict]) -> dict:
    """Mean of every column over the folds that have it, the worst fold's CTC digit error, and the targets met."""
    means = {}
    for key, _ in COLUMNS:
        values = [m[key] for m in folds.values() if m.get(key) is not None]
        means[key] = sum(values) / len(values) if values else None
    errors = [m["symbol_error_rate"] for m in folds.values()]
    worst = max(errors) if errors else None
    met = None
    if errors:
        met = {"mean_digit_error": means["symbol_error_rate"] <= TARGETS["mean_digit_error"],
               "worst_fold_digit_error": worst <= TARGETS["worst_fold_digit_error"],
               "single_digit_accuracy": (means["single_digit_accuracy"] or 0) >= TARGETS["single_digit_accuracy"]}
    return {"folds": len(folds), "mean": means, "worst_fold_digit_error": worst, "targets_met": met}


def table(folds: dict[str, dict], official: dict | None = None, official_dir: str | None = None) -> str:
    """The markdown table: a row per held-out speaker, the mean, and the speaker-dependent run if given."""
    lines = ["| held-out speaker | " + " | ".join(header for _, header in COLUMNS) + " |",
             "|---|" + "---|" * len(COLUMNS)]
    for speaker, metrics in folds.items():
        lines.append(f"| {speaker} | " + " | ".join(_percent(metrics.get(key)) for key, _ in COLUMNS) + " |")
    summary = summarize(folds)
    lines.append(f"| **mean ({summary['folds']} folds)** | "
                 + " | ".join(_percent(summary["mean"][key]) for key, _ in COLUMNS) + " |")
    if official is not None:
        lines.append(f"| speaker-dependent test split ({official_dir}) | "
                     + " | ".join(_percent(official.get(key)) for key, _ in COLUMNS) + " |")
    if summary["worst_fold_digit_error"] is not None:
        met = summary["targets_met"]
        lines += ["", f"Worst fold CTC digit error {_percent(summary['worst_fold_digit_error'])}. Targets: mean digit "
                      f"error <= 5 % ({'met' if met['mean_digit_error'] else 'not met'}), no fold above 10 % "
                      f"({'met' if met['worst_fold_digit_error'] else 'not met'}), single digits >= 95 % "
                      f"({'met' if met['single_digit_accuracy'] else 'not met'})."]
    return "\n".join(lines) + "\n"


def write_report(out: Path, speakers: list[str], official_dir: str | None) -> str:
    """Writes OUT/table.md and OUT/table.json from the folds that finished; returns the markdown."""
    folds = {s: m for s in speakers if (m := read_metrics(fold_dir(out, s))) is not None}
    official = read_metrics(Path(official_dir)) if official_dir else None
    if official_dir and official is None:
        print(f"warning: {official_dir}/metrics.json not found; the speaker-dependent row is left out",
              file=sys.stderr)
    markdown = table(folds, official, official_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(markdown)
    keys = [key for key, _ in COLUMNS] + ["train_seconds", "test_utterances", "single_digits"]
    (out / "table.json").write_text(json.dumps({
        "folds": {s: {k: m.get(k) for k in keys} for s, m in folds.items()},
        "missing_folds": [s for s in speakers if s not in folds],
        "summary": summarize(folds),
        "speaker_dependent": {"run_dir": official_dir, **{k: official.get(k) for k in keys}} if official else None,
    }, indent=2) + "\n")
    return markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speech_loso", description=__doc__.split("\n\n")[0],
                                     epilog="Any other --flag is passed to every fold's pipelines.speech_ctc.")
    parser.add_argument("--data-dir", default="../shared/data/fsdd/recordings", help="FSDD recordings folder")
    parser.add_argument("--out", default="runs/speech_loso", help="OUT/fold_<speaker>/ per fold, OUT/table.md")
    parser.add_argument("--max-minutes", type=float, default=25.0,
                        help="each fold's CTC training budget (pipelines.speech_ctc --max-minutes); 0: none")
    parser.add_argument("--speakers", default="", help="the folds to run, NAME[,NAME]; default: every speaker")
    parser.add_argument("--official", default=None,
                        help="a speech_ctc run dir on the speaker-dependent split, reported beside LOSO")
    parser.add_argument("--report-only", action="store_true", help="only write the table of the finished folds")
    args, extra = parser.parse_known_args(argv)
    check_extra(extra)
    from pipelines import fsdd
    from pipelines.readers import DataError

    try:
        found = fsdd.speakers(args.data_dir)
        chosen = fsdd.parse_speakers(args.speakers)
        speakers = found if chosen is None else fsdd.require_speakers(chosen, found, f"FSDD folder {args.data_dir}")
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out, data_dir, failed = Path(args.out).absolute(), str(Path(args.data_dir).absolute()), []
    for speaker in [] if args.report_only else speakers:
        if read_metrics(fold_dir(out, speaker)) is not None:
            print(f"fold {speaker}: done already ({fold_dir(out, speaker)}/metrics.json), skipped")
            continue
        print(f"fold {speaker}: training on the other speakers, testing on {speaker}", flush=True)
        status = run_fold(fold_command(data_dir, speaker, out, args.max_minutes, extra),
                          out / f"fold_{speaker}.log")
        if status != 0:
            print(f"fold {speaker}: failed (exit status {status}); see {out}/fold_{speaker}.log", file=sys.stderr)
            failed.append(speaker)
    print(write_report(out, speakers, args.official))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
