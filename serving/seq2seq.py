"""Seq2seq serving over onnxruntime: ``encoder.onnx`` + ``decoder_step.onnx``, decoded greedily or by beam search in
numpy (``serving/beam.py``), one decoder call per output position for the whole batch / beam.

    predictor = serving.load("runs/translation")       # the run dir (or its encoder.onnx)
    predictor.predict("I like tea.")                   # Seq2SeqResult: .output, .output_tokens, .score, ...
    predictor.predict("I like tea.", beam_size=1)      # greedy
    predictor.decode_tokens([["i", "like", "tea", "."]], beam_size=4)  # pre-tokenized input → Hypothesis list

Task predictors (translation, parsing, text auto-encoder) subclass :class:`Seq2SeqPredictor`, are registered with
``@register("task")`` (``serving/base.py``) and, when they post-process the output, override
:meth:`Seq2SeqPredictor.make_result`. The graph steps are named by what they take: ``encode_ids`` (source ids →
encoder states), ``decode_states`` (states → hypotheses), ``decode_tokens`` (source tokens → hypotheses).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from serving import metadata as _metadata
from serving.base import Predictor, Result, predictor_class, register
from serving.beam import Hypothesis, beam_search, greedy
from serving.errors import InputError, ModelError
from serving.session import OnnxModel
from serving.tokenizer import SPACE_SYMBOL, make_tokenizer
from serving.vocab import Vocabulary

ENCODER_FILE, DECODER_FILE = "encoder.onnx", "decoder_step.onnx"
WHITESPACE_SPEC = {"name": "whitespace_v1"}  # pre-tokenized text: split on white space, nothing else


class Seq2SeqModel:
    """The two onnxruntime sessions of a seq2seq export."""

    def __init__(self, encoder: OnnxModel, decoder: OnnxModel):
        self.encoder, self.decoder = encoder, decoder
        self.path = encoder.path


def _whitespace(text: str) -> list[str]:
    if not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}")
    return text.split()


def source_tokenizer(spec: dict):
    """The tokenizer named by a seq2seq model's ``source_tokenizer`` spec (word, character or white space)."""
    if isinstance(spec, dict) and spec.get("name") == WHITESPACE_SPEC["name"]:
        return _whitespace
    return make_tokenizer(spec)


def detokenize(tokens: list[str], rule: str) -> str:
    """Output tokens → text: ``space`` joins with spaces, ``chars`` concatenates (``▁`` becomes a space)."""
    if rule == "chars":
        return "".join(tokens).replace(SPACE_SYMBOL, " ")
    return " ".join(tokens)


@dataclasses.dataclass(frozen=True)
class Seq2SeqResult(Result):
    """One decoded input.

    Attributes:
      text: the input.
      output: the output text (detokenized).
      output_tokens: the output tokens (without ``<s>`` / ``</s>``).
      source_tokens: the tokens the encoder read.
      unknown_tokens: source tokens not in the vocabulary (read as ``<unk>``).
      score: sum of the output's log-probabilities (``</s>`` included when finished).
      normalized_score: the score beam search ranked by (score / length ** length_penalty).
      finished: the decoder emitted ``</s>``; False when the max-length guard stopped it.
      beam_size: 1 for greedy decoding.
      attention: per output token (and ``</s>``), the weights over the source tokens; empty without attention.
    """

    text: str
    output: str
    output_tokens: list[str]
    source_tokens: list[str]
    unknown_tokens: list[str]
    score: float
    normalized_score: float
    finished: bool
    beam_size: int
    attention: list[list[float]]

    def __str__(self) -> str:
        note = "" if self.finished else "  (stopped at the length limit)"
        return f"{self.text}\n  → {self.output}  (beam {self.beam_size}, score {self.score:.3f}){note}"


WORD_POSITION = "word_position"


def pointer_metadata(pointer_id: int, target_vocab: Sequence[str]) -> dict:
    """The metadata key of a decoder with a word pointer (``{}`` without one): the target token that places one
    source word, and the decoder-step input that takes how many of them were fed so far."""
    if not pointer_id:
        return {}
    return {"word_pointer": {"token": target_vocab[pointer_id], "id": int(pointer_id), "input": WORD_POSITION}}


@register("seq2seq")
class Seq2SeqPredictor(Predictor):
    """Decodes texts with an exported seq2seq model. Build one with :func:`serving.load`.

    Inputs longer than the model's ``max_source_len`` tokens are refused (InputError): cutting a sentence to
    translate or to parse would silently change it. Unknown tokens are read as ``<unk>`` and listed in the result.
    """

    task = "seq2seq"
    input_kind = "text"

    def __init__(self, model: Seq2SeqModel, metadata: dict):
        self.model, self.metadata = model, metadata
        try:
            self.source_vocab = Vocabulary(metadata["source_vocab"], "source vocabulary")
            self.target_vocab = Vocabulary(metadata["target_vocab"], "target vocabulary")
            special = metadata["special_ids"]
            self.pad_id, self.unk_id = int(special["pad"]), int(special["unk"])
            self.start_id, self.end_id = int(special["start"]), int(special["end"])
            self.tokenizer = source_tokenizer(metadata["source_tokenizer"])
            self.detokenizer = metadata.get("target_detokenizer", "space")
            self.max_source_len = int(metadata["max_source_len"])
            self.max_target_len = int(metadata["max_target_len"])
            self.state_names = list(metadata["states"])
            self.attention = metadata["attention"] != "none"
            decoding = metadata.get("decoding", {})
            self.beam_size = int(decoding.get("beam_size", 1))
            self.length_penalty = float(decoding.get("length_penalty", 1.0))
            self.pointer_id = int(metadata.get("word_pointer", {}).get("id", 0))
        except KeyError as err:
            raise ModelError(f"{model.path}: seq2seq metadata lacks {err}") from None
        self._check_graphs()

    def _check_graphs(self) -> None:
        enc, dec = self.model.encoder, self.model.decoder
        needed_enc = set(self.state_names) | ({"memory", "memory_mask"} if self.attention else set())
        needed_dec = {"token_ids", *self.state_names} | ({"memory", "memory_mask"} if self.attention else set())
        needed_dec |= {WORD_POSITION} if self.pointer_id else set()
        if "source_ids" not in enc.inputs or not needed_enc <= set(enc.outputs):
            raise ModelError(f"{enc.path}: encoder graph lacks source_ids or outputs {sorted(needed_enc)}")
        if set(dec.inputs) != needed_dec or "log_probs" not in dec.outputs:
            raise ModelError(f"{dec.path}: decoder step takes {sorted(dec.inputs)}, expected {sorted(needed_dec)}")
        width = dec.output_shape("log_probs")[-1]
        if isinstance(width, int) and width != len(self.target_vocab):
            raise ModelError(f"{dec.path}: log_probs has {width} entries but the target vocabulary "
                             f"{len(self.target_vocab)}")

    # --- the machine --------------------------------------------------------------------------------------------

    def encode_ids(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Runs the encoder on padded source ids [batch, time]: states (and memory, memory_mask; and the word
        pointer's start, ``word_position`` 0)."""
        out = self.model.encoder.run({"source_ids": np.asarray(ids, np.int32)})
        if self.pointer_id:  # the word pointer starts at the first word
            out[WORD_POSITION] = np.zeros(len(ids), np.int32)
        return out

    def step(self, tokens: np.ndarray, states: dict[str, np.ndarray]):
        """One decoder step for n rows at once: (log_probs [n, V], new states, attention [n, s] or None). With a
        word pointer, ``states`` also carries ``word_position`` (the pointer tokens fed before ``tokens``)."""
        feeds = {"token_ids": np.asarray(tokens, np.int32)[:, None],
                 **{name: states[name] for name in self.state_names}}
        if self.attention:
            feeds.update(memory=states["memory"], memory_mask=states["memory_mask"])
        if self.pointer_id:
            feeds[WORD_POSITION] = (states[WORD_POSITION] + (np.asarray(tokens) == self.pointer_id))[:, None]
        out = self.model.decoder.run(feeds)
        new_states = {name: out[f"new_{name}"] for name in self.state_names}
        if self.pointer_id:
            new_states[WORD_POSITION] = feeds[WORD_POSITION][:, 0]
        return out["log_probs"][:, -1], new_states, out["attention"][:, -1] if self.attention else None

    def decode_states(self, states: dict[str, np.ndarray], beam_size: int | None = None,
                      max_len: int | None = None) -> list[Hypothesis]:
        """Decodes from encoder outputs (or any initial states): greedy when ``beam_size`` is 1."""
        beam_size = self.beam_size if beam_size is None else int(beam_size)
        max_len = self.max_target_len if max_len is None else int(max_len)
        if beam_size < 1 or max_len < 1:
            raise InputError(f"beam_size and max_len must be at least 1, got {beam_size} and {max_len}")
        batch = len(next(iter(states.values())))
        if self.pointer_id and WORD_POSITION not in states:
            states = {**states, WORD_POSITION: np.zeros(batch, np.int32)}
        common = dict(start_id=self.start_id, end_id=self.end_id, max_len=max_len, length_penalty=self.length_penalty)
        if beam_size == 1:
            return greedy(self.step, dict(states), batch, **common)
        return beam_search(self.step, dict(states), batch, beam_size=beam_size, **common)

    def source_ids(self, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """Padded source ids [batch, longest] for token lists."""
        ids = np.full((len(token_lists), max(len(t) for t in token_lists)), self.pad_id, np.int32)
        for row, tokens in enumerate(token_lists):
            ids[row, : len(tokens)] = self.source_vocab.ids(tokens)
        return ids

    def decode_tokens(self, token_lists: Sequence[Sequence[str]], beam_size: int | None = None,
                      max_len: int | None = None) -> list[Hypothesis]:
        """Decodes pre-tokenized inputs (one encoder call, then one decoder call per output position)."""
        return self.decode_states(self.encode_ids(self.source_ids(token_lists)), beam_size, max_len)

    # --- text in, results out -----------------------------------------------------------------------------------

    def tokens(self, text, where: str = "text") -> list[str]:
        """The source tokens of ``text``.

        Raises:
          InputError: not a string (or UTF-8 bytes), empty, or longer than ``max_source_len`` tokens.
        """
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(f"{where} is not UTF-8 text (byte offset {err.start})") from None
        if not isinstance(text, str):
            raise InputError(f"{where} must be a string, got {type(text).__name__}")
        tokens = self.tokenizer(text)
        if not tokens:
            raise InputError(f"{where} is empty")
        if len(tokens) > self.max_source_len:
            raise InputError(f"{where} has {len(tokens)} tokens; this model reads at most {self.max_source_len} "
                             f"(max_source_len): split it into shorter sentences")
        return tokens

    def output_tokens(self, hyp: Hypothesis) -> list[str]:
        return [self.target_vocab.token(i) for i in hyp.ids]

    def make_result(self, text: str, source_tokens: list[str], hyp: Hypothesis, beam_size: int):
        """Builds the result object for one input (task predictors override it to post-process)."""
        out_tokens = self.output_tokens(hyp)
        attention = [] if hyp.attention is None else \
            [[round(float(w), 6) for w in row[: len(source_tokens)]] for row in hyp.attention]
        return Seq2SeqResult(text=text, output=detokenize(out_tokens, self.detokenizer), output_tokens=out_tokens,
                             source_tokens=source_tokens,
                             unknown_tokens=[t for t in source_tokens if t not in self.source_vocab],
                             score=hyp.score, normalized_score=hyp.normalized, finished=hyp.finished,
                             beam_size=beam_size, attention=attention)

    def predict(self, text: str, beam_size: int | None = None) -> Seq2SeqResult:
        """Decodes one text (beam search with the model's default beam size unless ``beam_size`` is given).

        Raises:
          InputError: see :meth:`tokens`.
        """
        if isinstance(text, (list, tuple)):
            raise InputError("predict takes one string; use predict_batch for many")
        return self.predict_batch([text], beam_size)[0]

    def predict_batch(self, texts: Sequence[str], beam_size: int | None = None, batch_size: int = 64) -> list:
        """Decodes many texts, ``batch_size`` sentences per encoder call and per decoder step.

        Raises:
          InputError: as :meth:`predict`, naming the offending index.
        """
        if isinstance(texts, (str, bytes)):
            raise InputError("predict_batch takes a list of strings; use predict for one string")
        texts = list(texts)
        beam = self.beam_size if beam_size is None else int(beam_size)
        results = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start: start + batch_size]
            token_lists = [self.tokens(t, "text" if len(texts) == 1 else f"texts[{start + i}]")
                           for i, t in enumerate(chunk)]
            hyps = self.decode_tokens(token_lists, beam)
            results += [self.make_result(t if isinstance(t, str) else bytes(t).decode("utf-8"), toks, h, beam)
                        for t, toks, h in zip(chunk, token_lists, hyps)]
        return results


def load_run(path: str | Path, predictors: dict | None = None, threads: int | None = None):
    """Loads a seq2seq run dir (or its ``encoder.onnx``, with ``decoder_step.onnx`` beside it).

    Args:
      predictors: task → predictor class to pick from; None (the default): the registry
        (:func:`serving.base.predictor_class`).

    Raises:
      ModelError: a file is missing, the metadata is missing or disagrees between the files, or the task has no
        predictor.
    """
    path = Path(path)
    run_dir = path if path.is_dir() else path.parent
    files = [run_dir / ENCODER_FILE, run_dir / DECODER_FILE]
    for file in files:
        if not file.is_file():
            raise ModelError(f"{run_dir} has no {file.name}: a seq2seq export needs {ENCODER_FILE} and {DECODER_FILE}")
    encoder, decoder = OnnxModel(files[0], threads=threads), OnnxModel(files[1], threads=threads)
    meta = _metadata.from_onnx_props(encoder.metadata_props, str(files[0]))
    if _metadata.from_onnx_props(decoder.metadata_props, str(files[1])) != meta:
        raise ModelError(f"{files[0]} and {files[1]} carry different metadata: they come from different exports")
    if (run_dir / "metadata.json").is_file():
        _metadata.check_run_files(_metadata.read_file(run_dir / "metadata.json"), meta, run_dir)
    if predictors is None:
        predictor = predictor_class(meta["task"], str(files[0]))
    else:
        predictor = predictors.get(meta["task"])
        if predictor is None:
            raise ModelError(f"{files[0]}: task {meta['task']!r} has no predictor here (known: {sorted(predictors)})")
    return predictor(Seq2SeqModel(encoder, decoder), meta)


def is_seq2seq(path: str | Path) -> bool:
    """True for a run dir holding encoder.onnx (and no model.onnx), or a path to an encoder.onnx."""
    path = Path(path)
    if path.is_dir():
        return (path / ENCODER_FILE).is_file() and not (path / "model.onnx").is_file()
    return path.name == ENCODER_FILE
