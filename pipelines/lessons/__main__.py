"""Runs the training lessons: ``python -m pipelines.lessons [--out RUN_DIR] [--quick] [--only a,b] [--seed N]``.

Each experiment writes ``<name>.png`` (its figure) and ``<name>.json`` (its numbers) into the run dir and prints
a short table; ``metrics.json`` gathers every experiment's summary. The run dir appears only when all succeeded.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

from pipelines.common import build_parser, from_args
from pipelines.lessons import EXPERIMENTS, experiment, settings


@dataclasses.dataclass(frozen=True)
class LessonsConfig:
    out: str = dataclasses.field(default="runs/lessons", metadata={"help": "run dir to write"})
    quick: bool = dataclasses.field(default=False, metadata={"help": "small settings, well under a minute"})
    only: str | None = dataclasses.field(
        default=None, metadata={"help": f"comma-separated experiments to run, of {','.join(EXPERIMENTS)}; none: all"})
    seed: int = 0
    figures: str | None = dataclasses.field(
        default=None, metadata={"help": "also copy the PNG figures into this folder (e.g. docs/lessons)"})

    def names(self) -> list[str]:
        """The experiments to run, in the lecture's order.

        Raises:
          ValueError: an unknown or empty name in ``only``.
        """
        if self.only is None:
            return list(EXPERIMENTS)
        names = [name.strip() for name in self.only.split(",")]
        for name in names:
            if name not in EXPERIMENTS:
                raise ValueError(f"--only: unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
        return [name for name in EXPERIMENTS if name in names]


def run(config: LessonsConfig) -> dict:
    """Runs the chosen experiments into a staged run dir; returns ``metrics`` (each experiment's summary).

    Raises:
      ValueError: an unknown experiment name.
    """
    from export.rundir import staged
    from pipelines import training
    from pipelines.lessons import report

    names = config.names()
    metrics = {}
    with staged(config.out) as run_dir, training.training_log(run_dir / "lessons.log"):
        (run_dir / "config.json").write_text(json.dumps({"task": "lessons", **dataclasses.asdict(config)}, indent=2))
        for name in names:
            module = experiment(name)
            started = time.time()
            training.set_seed(config.seed)
            result = module.run(settings(name, config.quick), seed=config.seed)
            seconds = time.time() - started
            result["seconds"] = round(seconds, 1)
            report.write_json(run_dir / f"{name}.json", result)
            module.plot(result, run_dir / f"{name}.png")
            metrics[name] = {**result["summary"], "seconds": round(seconds, 1)}
            print(f"\n== {name} ({seconds:.1f} s) ==\n{module.table(result)}", flush=True)
        report.write_json(run_dir / "metrics.json", metrics)
    if config.figures:
        figures = Path(config.figures)
        figures.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copyfile(Path(config.out) / f"{name}.png", figures / f"{name}.png")
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(LessonsConfig, __doc__.split("\n\n")[1], prog="python -m pipelines.lessons")
    config = from_args(LessonsConfig, parser.parse_args(argv))
    try:
        config.names()
    except ValueError as err:
        parser.error(str(err))  # exits with status 2
    started = time.time()
    run(config)
    print(f"\nwrote {config.out} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
