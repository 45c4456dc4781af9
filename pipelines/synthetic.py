"""A seeded, offline generator of ATIS-style flight queries for slot filling and intent detection.

Each query is a lower-case English request such as ``show me flights from new york to st. louis on monday
morning``, with one IOB tag per word using ATIS slot names (``B-fromloc.city_name I-fromloc.city_name ...``) and
one ATIS intent (``atis_flight``, ``atis_airfare``, ... and the rare multi-intent ``atis_flight#atis_airfare``).
Only the standard library is used; the same seed always gives the same queries.

Templates are strings of space-separated tokens:
  ``word``          a plain word, tagged ``O``;
  ``{slot}``        a value drawn from the pool named by the slot's last part (``{fromloc.city_name}`` draws from
                    ``city_name``), tagged ``B-slot I-slot ...``; ``{slot:pool}`` names the pool explicitly;
  ``<macro>``       one of the macro's alternatives, expanded in turn; ``<macro?>`` is left out half the time.
"""

from __future__ import annotations

import random

from pipelines.readers import SlotExample

CITIES = (
    "boston", "denver", "atlanta", "dallas", "pittsburgh", "baltimore", "philadelphia", "washington", "oakland",
    "seattle", "miami", "phoenix", "chicago", "detroit", "houston", "memphis", "milwaukee", "nashville", "orlando",
    "tampa", "charlotte", "cleveland", "columbus", "indianapolis", "newark", "toronto", "montreal", "cincinnati",
    "burbank", "ontario", "tacoma", "minneapolis", "new york", "san francisco", "salt lake city", "st. louis",
    "los angeles", "fort worth", "las vegas", "kansas city", "san diego", "long beach", "st. paul", "san jose",
)
AIRLINES = (
    "american airlines", "delta", "united", "us air", "continental", "northwest", "twa", "eastern airlines",
    "alaska airlines", "america west", "lufthansa", "delta airlines", "united airlines", "canadian airlines",
)
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
DAY_NUMBERS = (
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh",
    "twelfth", "thirteenth", "fourteenth", "fifteenth", "twentieth", "twenty first", "twenty second",
    "twenty third", "twenty fifth", "twenty ninth", "thirtieth", "thirty first",
)
DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
TIMES = ("8 am", "5 pm", "noon", "10 am", "7 pm", "1 o'clock", "830 am", "3 pm", "11 am", "9 pm", "midnight",
         "6 pm", "4 pm", "2 pm", "1030")

POOLS = {
    "city_name": CITIES,
    "airline_name": AIRLINES,
    "month_name": MONTHS,
    "day_number": DAY_NUMBERS,
    "day_name": DAY_NAMES,
    "date_relative": ("tomorrow", "day after tomorrow"),
    "next": ("next", "this"),
    "period_of_day": ("morning", "afternoon", "evening", "night"),
    "time": TIMES,
    "time_relative": ("before", "after", "around"),
    "arrive_rel": ("before", "after", "by", "around"),
    "class_type": ("first class", "coach", "business class", "thrift"),
    "round_trip": ("round trip", "one way"),
    "cost_relative": ("cheapest", "lowest", "least expensive", "most expensive"),
    "cmp": ("less", "more"),
    "under": ("under",),
    "fare_amount": ("200 dollars", "300 dollars", "500 dollars", "1000 dollars", "150 dollars"),
    "flight_mod": ("first", "last", "earliest", "latest"),
    "flight_stop": ("nonstop", "direct"),
    "transport_type": ("taxi", "limousine", "rental car", "bus", "car rental"),
    "meal_description": ("breakfast", "lunch", "dinner", "snacks"),
    "fare_basis_code": ("qx", "qw", "y", "f", "h", "bh", "yn"),
    "airline_code": ("ua", "dl", "as", "co", "hp", "ea", "us"),
}

MACROS = {
    "please": ("please", "can you", "could you"),
    "show": ("show me", "list", "give me", "i want to see", "find", "what are", "i need"),
    "flights": ("flights", "all flights", "the flights", "all the flights", "any flights"),
    "want": ("i'd like to fly", "i want to fly", "i need to fly", "i would like to travel", "i need to go",
             "i want to go"),
    "route": ("from {fromloc.city_name} to {toloc.city_name}", "from {fromloc.city_name} to {toloc.city_name}",
              "to {toloc.city_name} from {fromloc.city_name}", "between {fromloc.city_name} and {toloc.city_name}",
              "leaving {fromloc.city_name} for {toloc.city_name}",
              "from {fromloc.city_name} going to {toloc.city_name}"),
    "date": ("on {depart_date.day_name}", "on {depart_date.month_name} {depart_date.day_number}",
             "{depart_date.date_relative}", "{depart_date.date_relative:next} {depart_date.day_name}",
             "on {depart_date.day_name} {depart_date.month_name} {depart_date.day_number}",
             "on {depart_date.day_name} {depart_time.period_of_day}"),
    "time": ("in the {depart_time.period_of_day}", "{depart_time.time_relative} {depart_time.time}",
             "at {depart_time.time}", "leaving {depart_time.time_relative} {depart_time.time}",
             "departing in the {depart_time.period_of_day}", "{depart_date.day_name} {depart_time.period_of_day}",
             "{depart_time.period_of_day}"),
    "arrive": ("arriving {arrive_time.time_relative:arrive_rel} {arrive_time.time}",
               "arriving on {arrive_date.day_name}",
               "that arrive {arrive_time.time_relative:arrive_rel} {arrive_time.time}",
               "and arrive {arrive_time.time_relative:arrive_rel} {arrive_time.time}"),
    "stop": ("with a stop in {stoploc.city_name}", "via {stoploc.city_name}", "that stop in {stoploc.city_name}",
             "connecting in {stoploc.city_name}", "with a stopover in {stoploc.city_name}"),
    "airline": ("on {airline_name}", "with {airline_name}", "flying {airline_name}"),
    "budget": ("{cost_relative:cmp} than {fare_amount}", "{cost_relative:under} {fare_amount}"),
}

TEMPLATES = (
    ("atis_flight", "<please?> <show> <flights> <route> <date?> <time?>"),
    ("atis_flight", "<want> <route> <date?> <time?>"),
    ("atis_flight", "<show> {round_trip} flights <route> <date?>"),
    ("atis_flight", "<show> {airline_name} flights <route> <date?>"),
    ("atis_flight", "<show> <flights> <route> <airline> <date?>"),
    ("atis_flight", "<show> <flights> <route> <stop> <date?>"),
    ("atis_flight", "what flights are available <route> <date?> <time?>"),
    ("atis_flight", "what flights go <route> <arrive>"),
    ("atis_flight", "i need a flight <route> <arrive> <date?>"),
    ("atis_flight", "<show> the {flight_mod} flight <route> <date?>"),
    ("atis_flight", "<show> {class_type} flights <route> <date?>"),
    ("atis_flight", "flights <route> <date> <time?>"),
    ("atis_flight", "are there any {flight_stop} flights <route> <time?> <date?>"),
    ("atis_flight", "what is the {cost_relative} flight <route> <date?>"),
    ("atis_flight", "<show> <flights> <route> that serve {meal_description}"),
    ("atis_flight", "i would like a {round_trip} ticket <route> <date?>"),
    ("atis_flight", "<show> <flights> leaving {fromloc.city_name} <date?> and arriving in {toloc.city_name} <time?>"),
    ("atis_flight", "does {airline_name} fly <route> <date?>"),
    ("atis_flight", "<want> to {toloc.city_name} <date> from {fromloc.city_name}"),
    ("atis_airfare", "what is the {cost_relative} fare <route> <date?>"),
    ("atis_airfare", "how much is a {class_type} ticket <route>"),
    ("atis_airfare", "<show> the {round_trip} fares <route> <budget?>"),
    ("atis_airfare", "<show> fares <route> <budget>"),
    ("atis_airfare", "what are the fares for {airline_name} <route>"),
    ("atis_airfare", "{cost_relative} airfare <route>"),
    ("atis_airfare", "how much does it cost to fly <route> <date?>"),
    ("atis_ground_service", "what ground transportation is available in {city_name}"),
    ("atis_ground_service", "is there {transport_type} service in {city_name}"),
    ("atis_ground_service", "<show> ground transportation in {city_name} <date?>"),
    ("atis_ground_service", "what kind of ground transportation is there in {city_name}"),
    ("atis_ground_service", "i need a {transport_type} in {city_name}"),
    ("atis_airline", "which airlines fly <route>"),
    ("atis_airline", "what airlines have flights <route> <date?>"),
    ("atis_airline", "which airlines serve {city_name}"),
    ("atis_airline", "what airlines fly <route> <stop>"),
    ("atis_flight_time", "what time does the {flight_mod} flight <route> leave"),
    ("atis_flight_time", "what are the departure times <route> <date?>"),
    ("atis_flight_time", "when do flights leave {fromloc.city_name} for {toloc.city_name} <date?>"),
    ("atis_abbreviation", "what does fare code {fare_basis_code} mean"),
    ("atis_abbreviation", "what is {airline_code}"),
    ("atis_abbreviation", "what does {airline_code} stand for"),
    ("atis_meal", "what meals are served on {airline_name} flights <route>"),
    ("atis_meal", "is {meal_description} served on the flight <route> <date?>"),
    ("atis_flight#atis_airfare", "<show> <flights> and fares <route> <date?>"),
    ("atis_flight#atis_airfare", "i want the flights and their fares <route> <budget?>"),
)

INTENT_WEIGHTS = (
    ("atis_flight", 60), ("atis_airfare", 12), ("atis_ground_service", 8), ("atis_airline", 6),
    ("atis_flight_time", 5), ("atis_abbreviation", 4), ("atis_meal", 3), ("atis_flight#atis_airfare", 2),
)

_BY_INTENT: dict[str, list[str]] = {}
for _intent, _text in TEMPLATES:
    _BY_INTENT.setdefault(_intent, []).append(_text)


def _expand(text: str, rng: random.Random, used: set[str], out: list[tuple[str, str]]) -> None:
    """Appends the (word, tag) pairs of one template or macro alternative to ``out``."""
    for token in text.split():
        if token.startswith("{"):
            slot, _, pool = token[1:-1].partition(":")
            values = POOLS[pool or slot.rsplit(".", 1)[-1]]
            fresh = [value for value in values if value not in used] or list(values)
            value = rng.choice(fresh)
            used.add(value)
            out.extend((word, ("B-" if i == 0 else "I-") + slot) for i, word in enumerate(value.split()))
        elif token.startswith("<"):
            name = token[1:-1]
            if name.endswith("?"):
                name = name[:-1]
                if rng.random() < 0.5:
                    continue
            _expand(rng.choice(MACROS[name]), rng, used, out)
        else:
            out.append((token, "O"))


def _generate(n: int, rng: random.Random) -> list[SlotExample]:
    intents = [intent for intent, _ in INTENT_WEIGHTS]
    weights = [weight for _, weight in INTENT_WEIGHTS]
    examples = []
    for _ in range(n):
        intent = rng.choices(intents, weights)[0]
        pairs: list[tuple[str, str]] = []
        _expand(rng.choice(_BY_INTENT[intent]), rng, set(), pairs)
        words, tags = zip(*pairs)
        examples.append(SlotExample(tuple(words), tuple(tags), intent))
    return examples


def flight_queries(n: int, seed: int = 0) -> list[SlotExample]:
    """Generates ATIS-style flight queries.

    Args:
      n: how many queries to generate (0 or more).
      seed: the random seed; the same seed always gives the same queries.

    Returns:
      ``n`` examples, each with lower-case words, one IOB tag per word and an ATIS intent.
    """
    if n < 0:
        raise ValueError(f"n must be 0 or more, got {n}")
    return _generate(n, random.Random(seed))


def synthetic_dataset(
    n_train: int = 3000, n_valid: int = 400, n_test: int = 400, seed: int = 0
) -> dict[str, list[SlotExample]]:
    """Generates train, valid and test splits of flight queries.

    Args:
      n_train, n_valid, n_test: the number of queries in each split.
      seed: the base seed; split ``k`` (train 0, valid 1, test 2) uses ``flight_queries(n, 3 * seed + k)``.

    Returns:
      ``{"train": [...], "valid": [...], "test": [...]}``.
    """
    sizes = {"train": n_train, "valid": n_valid, "test": n_test}
    return {split: flight_queries(n, 3 * seed + k) for k, (split, n) in enumerate(sizes.items())}
