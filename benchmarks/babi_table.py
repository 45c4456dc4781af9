"""bAbI 1k per-task table: MemN2N and the recurrent reader, trained per task, beside the published MemN2N figures.

    nice -n 10 python -m benchmarks.babi_table --data-dir ../shared/data/babi/tasks_1-20_v1-2/en \
        [--models memn2n,reader] [--tasks 1-20] [--out runs/babi_table] [--epochs N] [--restarts N]
        [--decay-every N] [--no-linear-start] [--optimizer sgd|adam] [--position-formula code|paper]
        [--softmax-slots -1|0] [--keep best|last] [--seed N]
        [--pool DIR,...] [--joint RUN_DIR] [--report-only]

Each (model, task) trains with ``pipelines.reading_qa`` (train / dev / test per SPLITS.md; the restart best on dev
is kept) and writes OUT/<model>/qaN/metrics.json; a finished pair is not retrained (resume by running again).
OUT/table.md and OUT/table.json hold the test error per task, the mean error and the failed tasks (error > 5%),
over the tasks that finished, beside the published figures.

Published: Sukhbaatar, Szlam, Weston & Fergus (2015), End-To-End Memory Networks, Table 1, 1k training, column
"MemN2N PE LS RN" (3 hops, position encoding, linear start, random noise, each task trained on its own; best of 10
restarts by training error): mean error 13.9%, 11 failed tasks. Their best 1k figure is the jointly trained
"PE LS RN" column: 12.4% mean error, also 11 failed tasks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

# Test error (%) per task, Sukhbaatar et al. 2015, Table 1, 1k training.
PUBLISHED_PE_LS_RN = [0.0, 8.3, 40.3, 2.8, 13.1, 7.6, 17.3, 10.0, 13.2, 15.1, 0.9, 0.2, 0.4, 1.7, 0.0, 1.3, 51.0,
                      11.1, 82.8, 0.0]  # mean 13.9, 11 failed
PUBLISHED_PE_LS_RN_JOINT = [0.0, 11.4, 21.9, 13.4, 14.4, 2.8, 18.3, 9.3, 1.9, 6.5, 0.3, 0.1, 0.2, 6.9, 0.0, 2.7,
                            40.4, 9.4, 88.0, 0.0]  # mean 12.4, 11 failed


def _tasks(spec: str) -> list[int]:
    tasks = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        tasks.extend(range(int(lo), int(hi or lo) + 1))
    return tasks


def summarize(errors: dict[int, float]) -> dict:
    """Mean error (%) and failed tasks (error > 5%) over the tasks in ``errors``."""
    values = list(errors.values())
    return {"tasks": len(values), "mean_error": sum(values) / len(values) if values else None,
            "failed": sum(e > 5.0 for e in values)}


def write_table(out: Path, results: dict[str, dict[int, dict]]) -> str:
    """Writes OUT/table.md and OUT/table.json; returns the markdown."""
    models = list(results)
    tasks = sorted({t for per in results.values() for t in per})
    lines = ["| task | " + " | ".join(f"{m} error %" for m in models) + " | paper PE LS RN | paper joint |",
             "|---|" + "---|" * (len(models) + 2)]
    for t in tasks:
        cells = [f"{100 * (1 - results[m][t]['accuracy']):.1f}" if t in results[m] else "—" for m in models]
        lines.append(f"| {t} | " + " | ".join(cells) + f" | {PUBLISHED_PE_LS_RN[t - 1]:.1f} | "
                     f"{PUBLISHED_PE_LS_RN_JOINT[t - 1]:.1f} |")
    summary = {m: summarize({t: 100 * (1 - r["accuracy"]) for t, r in results[m].items()}) for m in models}
    done = {m: sorted(results[m]) for m in models}
    paper = {name: summarize({t: col[t - 1] for t in tasks})
             for name, col in (("pe_ls_rn", PUBLISHED_PE_LS_RN), ("pe_ls_rn_joint", PUBLISHED_PE_LS_RN_JOINT))}
    cells = [f"{s['mean_error']:.1f} ({s['tasks']} tasks)" if s["tasks"] else "—" for s in summary.values()]
    lines.append("| **mean** | " + " | ".join(cells) + f" | {paper['pe_ls_rn']['mean_error']:.1f} | "
                 f"{paper['pe_ls_rn_joint']['mean_error']:.1f} |")
    lines.append("| **failed (>5%)** | " + " | ".join(str(s["failed"]) for s in summary.values()) +
                 f" | {paper['pe_ls_rn']['failed']} | {paper['pe_ls_rn_joint']['failed']} |")
    markdown = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(markdown)
    (out / "table.json").write_text(json.dumps({
        "test_error_percent": {m: {t: round(100 * (1 - r["accuracy"]), 2) for t, r in sorted(results[m].items())}
                               for m in models},
        "summary": summary, "tasks_done": done,
        "published_on_the_same_tasks": paper,
        "train_seconds": {m: round(sum(r["train_seconds"] for r in results[m].values()), 1) for m in models},
    }, indent=2) + "\n")
    return markdown


def pool_runs(results: dict[str, dict[int, dict]], pool: list[Path]) -> list[str]:
    """Replaces a (model, task) result by a pool dir's run of the same pair when that run is better on dev; returns
    the runs taken."""
    taken = []
    for folder in pool:
        for model, per_task in results.items():
            for metrics_file in sorted((folder / model).glob("qa*/metrics.json")):
                task = int(metrics_file.parent.name[2:])
                other = json.loads(metrics_file.read_text())
                if task not in per_task or other["dev_accuracy"] > per_task[task]["dev_accuracy"]:
                    per_task[task] = other
                    taken.append(str(metrics_file.parent))
    return taken


def joint_column(run_dir: Path) -> dict[str, dict[int, dict]]:
    """The per-task test accuracy of one jointly trained run, as a results column (its training time spread over
    the tasks, so the column's total is the run's)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    per_task = {int(t): a for t, a in metrics["per_task_accuracy"].items()}
    share = metrics["train_seconds"] / len(per_task)
    return {"memn2n joint": {t: {"accuracy": a, "train_seconds": share} for t, a in per_task.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.babi_table", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="bAbI tasks_1-20_v1-2/en folder")
    parser.add_argument("--out", default="runs/babi_table")
    parser.add_argument("--models", default="memn2n", help="memn2n,reader for both (the reader's table used "
                                                               "--epochs 20 --decay-every 10)")
    parser.add_argument("--tasks", default="1-20", help="e.g. 1-20 or 1,2,3")
    parser.add_argument("--epochs", type=int, default=120, help="120 (with linear start 20, halving every 25): the "
                                                                    "authors' per-task recipe")
    parser.add_argument("--restarts", type=int, default=0, help="0: the pipeline's default per model")
    parser.add_argument("--decay-every", type=int, default=25)
    parser.add_argument("--linear-start", action=argparse.BooleanOptionalAction, default=True,
                        help="memn2n: start without the attention softmax (with Adam at 0.01 the softmax model learns "
                             "without it)")
    parser.add_argument("--linear-start-epochs", type=int, default=20)
    parser.add_argument("--optimizer", default="auto", choices=("auto", "sgd", "adam"),
                        help="auto: sgd (the authors' recipe) for memn2n, adam for reader; see "
                             "python -m pipelines.reading_qa --help")
    parser.add_argument("--position-formula", default="code", choices=("code", "paper"),
                        help="memn2n: the position encoding's formula (see python -m pipelines.reading_qa --help)")
    parser.add_argument("--softmax-slots", type=int, default=-1,
                        help="memn2n: -1 (the authors' code): the attention softmax spans min(50, longest training "
                             "story) slots, the empty ones scoring 0; 0: empty slots masked out")
    parser.add_argument("--keep", default="auto", choices=("auto", "best", "last"),
                        help="each restart's weights: best epoch on dev, or last (see python -m pipelines.reading_qa "
                             "--help)")
    parser.add_argument("--seed", type=int, default=0, help="another seed gives other restarts (to --pool)")
    parser.add_argument("--pool", default="",
                        help="more out dirs (comma-separated) whose (model, task) runs compete with OUT's: the run "
                             "with the best dev accuracy is tabulated (settings chosen on dev, per task)")
    parser.add_argument("--joint", default="",
                        help="a jointly trained run dir (python -m pipelines.reading_qa --task joint): its per-task "
                             "test accuracy becomes one more column")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: tabulate the (model, task) runs already in OUT")
    args = parser.parse_args(argv)

    import pipelines  # noqa: F401
    from pipelines.reading_qa import ReadingQAConfig, run

    out = Path(args.out)
    results: dict[str, dict[int, dict]] = {m: {} for m in args.models.split(",")}
    started = time.time()
    for task in _tasks(args.tasks):
        for model in results:
            run_dir = out / model / f"qa{task}"
            if not (run_dir / "metrics.json").is_file():
                if args.report_only:
                    continue
                config = ReadingQAConfig(data_dir=args.data_dir, task=str(task), model=model, out=str(run_dir),
                                         epochs=args.epochs, restarts=args.restarts, decay_every=args.decay_every,
                                         linear_start=args.linear_start, export=False,
                                         linear_start_epochs=args.linear_start_epochs,
                                         optimizer=args.optimizer if model == "memn2n" else "auto",
                                         position_formula=args.position_formula,
                                         softmax_slots=args.softmax_slots, keep=args.keep, seed=args.seed)
                print(f"\n=== {model}, task {task} ({time.time() - started:.0f} s so far) ===", flush=True)
                run(dataclasses.replace(config))
            results[model][task] = json.loads((run_dir / "metrics.json").read_text())
            if not args.report_only:
                print(write_table(out, results), flush=True)
    chosen = pool_runs(results, [Path(d) for d in args.pool.split(",") if d])
    if args.joint:
        results.update(joint_column(Path(args.joint)))
    if args.report_only or chosen or args.joint:
        print(write_table(out, results))
        if chosen:
            print("runs taken from the pool (better on dev): " + ", ".join(chosen))
    print(f"wall time {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
