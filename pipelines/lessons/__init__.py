"""The lecture's training lessons, reproduced with numbers and plots: ``python -m pipelines.lessons``.

One module per experiment, each with a ``Settings`` dataclass (``Settings.quick()`` for the small form the tests
run), ``run(settings, seed) -> dict`` (plain numbers, a ``summary`` among them), ``table(result) -> str`` and
``plot(result, path)``:

- ``linear_rnn``: the 1-neuron linear RNN, y^1000 = w^999, its gradient by BPTT against the closed form.
- ``error_surface``: the loss of a two-parameter RNN over a grid (plateaus and a cliff), gradient descent
  with and without clipping.
- ``clipping``: a vanilla RNN trained at a learning rate that diverges without clipping; clipnorm, global
  clipnorm and clipvalue.
- ``vanishing``: SimpleRNN vs LSTM vs GRU on a recall task at growing lengths; dL/dh_t against t.
- ``ctc_vs_trimming``: collapsing repeated frames cannot give "好棒棒"; CTC's blank can; Keras' CTC loss
  equals a brute-force sum over alignments.
- ``ntm``: a Neural Turing Machine and an LSTM on the copy task (tested on longer copies than trained on) and
  associative recall, trained with clipnorm; the NTM's read and write weightings over time.
"""

from __future__ import annotations

import importlib

import pipelines  # noqa: F401  (quiet TensorFlow, Keras backend)

EXPERIMENTS = ("linear_rnn", "error_surface", "clipping", "vanishing", "ctc_vs_trimming", "ntm")


def experiment(name: str):
    """The module of experiment ``name``.

    Raises:
      ValueError: an unknown name (the message lists the known ones).
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f"pipelines.lessons.{name}")


def settings(name: str, quick: bool = False):
    """The default (or ``quick``) settings of experiment ``name``."""
    module = experiment(name)
    return module.Settings.quick() if quick else module.Settings()
