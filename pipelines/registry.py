"""The task registry: task name → the module attribute that holds its :class:`pipelines.task.Task`.

Adding a task is one line here (its module is imported only when the task is asked for).
"""

from __future__ import annotations

import importlib

TASKS = {
    "slot_filling": "pipelines.slot_filling:SLOT_FILLING",
    "sentiment": "pipelines.sentiment:SENTIMENT",
    "key_terms": "pipelines.key_terms:KEY_TERMS",
    "speech_ctc": "pipelines.speech_ctc:SPEECH_CTC",
    "speech_autoencoder": "pipelines.speech_autoencoder:SPEECH_AUTOENCODER",
    "translation": "pipelines.translation:TRANSLATION",
    "parsing": "pipelines.parsing:PARSING",
    "text_autoencoder": "pipelines.text_autoencoder:TEXT_AUTOENCODER",
    "reading_qa": "pipelines.reading_qa:READING_QA",
    "pos_tagging": "pipelines.pos_tagging:POS_TAGGING",
}


def names() -> list[str]:
    """Every registered task name."""
    return list(TASKS)


def get(name: str):
    """The :class:`pipelines.task.Task` registered as ``name``.

    Raises:
      KeyError: no such task (the message lists the registered ones).
    """
    if name not in TASKS:
        raise KeyError(f"no task {name!r}; registered: {', '.join(TASKS)}")
    module, attribute = TASKS[name].split(":")
    return getattr(importlib.import_module(module), attribute)
