"""Built-in bAbI-style stories: people move between places and pick up and drop objects.

Two kinds of question, as bAbI tasks 1 and 2 (task numbers kept so tables line up):
  1 (single supporting fact): "Where is Mary?" → the place of Mary's last move.
  2 (two supporting facts): "Where is the football?" → the place of the person who last held it (their last move
    while holding it, or the place where it was dropped).
Each question records its supporting statements, so attention read-outs can be checked against them.
"""

from __future__ import annotations

import random

from pipelines.babi import QAExample

PEOPLE = ("mary", "john", "sandra", "daniel")
PLACES = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
OBJECTS = ("football", "apple", "milk")
MOVES = ("moved to", "went to", "journeyed to", "travelled to", "went back to")
TAKES = ("got", "picked up", "took", "grabbed")
DROPS = ("dropped", "discarded", "put down", "left")
TASKS = (1, 2)


def _story(rng: random.Random, task: int, n_questions: int, gap: tuple[int, int]) -> list[QAExample]:
    """One story with ``n_questions`` questions of ``task``, each after ``gap`` more statements."""
    statements: list[tuple[str, ...]] = []
    where: dict[str, tuple[str, int]] = {}  # person → (place, statement index)
    holder: dict[str, tuple[str, int]] = {}  # object → (person holding it, statement where they took it)
    obj_at: dict[str, tuple[str, tuple[int, ...]]] = {}  # object → (place, supporting statements)
    examples = []

    def say(text: str) -> int:
        statements.append(tuple(text.split()))
        return len(statements) - 1

    for _ in range(n_questions):
        for _ in range(rng.randint(*gap)):
            person = rng.choice(PEOPLE)
            held = [o for o, (p, _) in holder.items() if p == person]
            choice = rng.random()
            if task == 2 and person in where and choice < 0.25:
                free = [o for o in OBJECTS if o not in holder]
                if free:
                    obj = rng.choice(free)
                    index = say(f"{person} {rng.choice(TAKES)} the {obj} there")
                    holder[obj] = (person, index)
                    obj_at[obj] = (where[person][0], (index, where[person][1]))
                    continue
            if task == 2 and held and choice < 0.4:
                obj = rng.choice(held)
                index = say(f"{person} {rng.choice(DROPS)} the {obj}")
                del holder[obj]
                obj_at[obj] = (where[person][0], (index, where[person][1]))
                continue
            place = rng.choice([p for p in PLACES if p != where.get(person, ("",))[0]])
            index = say(f"{person} {rng.choice(MOVES)} the {place}")
            where[person] = (place, index)
            for obj in held:
                obj_at[obj] = (place, (holder[obj][1], index))
        if task == 1:
            person = rng.choice(sorted(where))
            place, index = where[person]
            question, answer, support = f"where is {person}", place, (index,)
        else:
            if not obj_at:
                continue
            obj = rng.choice(sorted(obj_at))
            place, support = obj_at[obj]
            question, answer = f"where is the {obj}", place
        examples.append(QAExample(tuple(statements), tuple(question.split()), answer, tuple(sorted(support)), task))
    return examples


def synthetic_examples(n: int, tasks: tuple[int, ...] = TASKS, seed: int = 0) -> list[QAExample]:
    """About ``n`` questions (in stories of five) drawn evenly from ``tasks`` (1: single, 2: two supporting facts).

    Raises:
      ValueError: a task other than 1 or 2.
    """
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"the built-in generator has tasks {TASKS} (single and two supporting facts), not {unknown}")
    rng = random.Random(seed)
    examples: list[QAExample] = []
    while len(examples) < n:
        task = tasks[len(examples) // 5 % len(tasks)]
        examples.extend(_story(rng, task, 5, (2, 3) if task == 1 else (2, 4)))
    return examples[:n]


def synthetic_splits(n_train: int, tasks: tuple[int, ...] = TASKS, seed: int = 0) -> dict[str, list[QAExample]]:
    """Train / valid / test questions from independent seeds (valid and test each a fifth of ``n_train``, at least
    100)."""
    n_eval = max(100, n_train // 5)
    return {
        "train": synthetic_examples(n_train, tasks, seed),
        "valid": synthetic_examples(n_eval, tasks, seed + 10_001),
        "test": synthetic_examples(n_eval, tasks, seed + 20_002),
    }
