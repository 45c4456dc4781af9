"""The Task contract: what every application implements once, so that the one runner can drive it.

A task is a subclass of :class:`Task` in its own module, registered with one line in ``pipelines.registry``:

=====================  ============================================================================================
``name``               the task name (``python -m pipelines.<name>``, the metadata's ``task``, the predictor's key)
``config_class``       its config: a frozen dataclass that extends ``pipelines.common.CommonOptions``
``data``               config → splits (``train``, ``valid``, ``test``): the real reader with ``--data-dir``, the
                       built-in generator without
``preprocess``         ctx → the object that owns preprocessing and vocabularies; it writes its assets into the
                       run dir and gives its part of the metadata
``build_model``        ctx → the Keras model that is served and exported
``compile``            ctx, model → the compiled model that trains (the same model, or a trainer around it)
``train_data``         ctx, seed → the training dataset (shuffled and augmented from ``seed`` only)
``validate``           ctx, model → the dev scores; ``monitor`` names the one maximised
``fit``                ctx → the trained model; by default one phase of ``runner.train`` (a task with a
                       pre-training, a baseline or restarts overrides it, and calls ``runner.train`` per phase)
``evaluate``           ctx, model → the metrics (dev and test)
``export_spec``        ctx, model → the metadata that export writes and serving reads (inputs, outputs, tokenizer,
                       tables; see ``serving.metadata``)
``parity_batches``     ctx → real batches of mixed lengths for the export parity check
``export``             ctx, model → the export's figures (SavedModel + ONNX + parity; seq2seq: two graphs)
``demo_input``         an input the command line predicts through onnxruntime after the run
=====================  ============================================================================================
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from pipelines.common import CommonOptions


@dataclasses.dataclass
class Context:
    """What the runner hands to a task's steps: the task, its resolved config, the data, the open run, the
    preprocessor (once made), and anything else a task wants to keep between steps (``extras``)."""

    task: "Task"
    config: Any
    splits: dict
    run: Any
    prep: Any = None
    extras: dict = dataclasses.field(default_factory=dict)

    @property
    def run_dir(self):
        return self.run.dir


class Task:
    """The contract; see the module docstring. Override what your task needs; ``fit`` and ``export`` have
    defaults that fit a single-graph task trained in one phase."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[CommonOptions]] = CommonOptions
    monitor: ClassVar[str] = "accuracy"
    demo_input: ClassVar[Any] = None
    doc: ClassVar[str] = ""

    def description(self) -> str:
        """The command line's description: the second paragraph of ``doc`` (default: the task module's docstring)."""
        import sys

        doc = self.doc or sys.modules[type(self).__module__].__doc__ or ""
        parts = doc.split("\n\n")
        return parts[1] if len(parts) > 1 else parts[0]

    def choices(self) -> dict[str, tuple]:
        """Allowed values per config field (``--cell`` and the like)."""
        return {}

    # -- data and preprocessing ---------------------------------------------------------------------------------
    def data(self, config) -> dict:
        raise NotImplementedError

    def preprocess(self, ctx: Context):
        raise NotImplementedError

    # -- model and training -------------------------------------------------------------------------------------
    def build_model(self, ctx: Context):
        raise NotImplementedError

    def compile(self, ctx: Context, model):
        raise NotImplementedError

    def train_data(self, ctx: Context, seed: int):
        raise NotImplementedError

    def validate(self, ctx: Context, model) -> dict:
        raise NotImplementedError

    def fit(self, ctx: Context):
        """Builds and compiles the model in the strategy's scope and trains it in one resumable phase."""
        from pipelines import runner

        with ctx.run.strategy.scope():
            model = self.build_model(ctx)
            trainer = self.compile(ctx, model)
        ctx.extras["loop"] = runner.train(
            trainer, lambda epoch: ctx.run.epoch_data(lambda seed: self.train_data(ctx, seed), epoch), ctx.run,
            validate=lambda: self.validate(ctx, model), monitor=self.monitor)
        return model

    # -- evaluation and export ----------------------------------------------------------------------------------
    def evaluate(self, ctx: Context, model) -> dict:
        raise NotImplementedError

    def export_spec(self, ctx: Context, model) -> dict:
        raise NotImplementedError

    def parity_batches(self, ctx: Context) -> list[dict]:
        raise NotImplementedError

    def export(self, ctx: Context, model) -> dict:
        """Saves ``model.keras`` and exports SavedModel + ONNX from ``export_spec``, verified on
        ``parity_batches``; returns ``{"onnx_max_abs_diff": ...}``."""
        from export import export_model
        from pipelines.training import float32_model

        model = float32_model(lambda: self.build_model(ctx), model)
        model.save(ctx.run_dir / "model.keras")
        meta = export_model(model, ctx.run_dir, self.export_spec(ctx, model), self.parity_batches(ctx))
        return {"onnx_max_abs_diff": max(meta["parity"]["onnx_max_abs_diff"].values())}

    # -- the command line ---------------------------------------------------------------------------------------
    def run(self, config) -> dict:
        """Runs the task with ``config`` (see ``pipelines.runner.run``)."""
        from pipelines import runner

        return runner.run(self, config)

    def main(self, argv: list[str] | None = None) -> int:
        from pipelines import runner

        return runner.main(self, argv)
