"""Vocabulary files and the tf.data preprocessing: a direct call equals the unbatched and the batched map."""

import numpy as np
import pytest
import tensorflow as tf

from pipelines import slot_data
from pipelines.readers import SlotExample
from serving.errors import ModelError
from serving.vocab import UNK_ID, Vocabulary, read_vocab, write_vocab

TRAIN = [
    SlotExample(("show", "flights", "to", "Boston"), ("O", "O", "O", "B-toloc.city_name"), "atis_flight"),
    SlotExample(("fares", "to", "new", "york"), ("O", "O", "B-toloc.city_name", "I-toloc.city_name"), "atis_airfare"),
    SlotExample(("flights", "to", "boston"), ("O", "O", "B-toloc.city_name"), "atis_flight"),
]


@pytest.fixture()
def run_dir(tmp_path):
    vocab, tags, intents = slot_data.build_vocabularies(TRAIN)
    slot_data.write_vocabularies(tmp_path, vocab, tags, intents)
    return tmp_path


def test_vocabularies_reserve_pad_and_unk_and_normalize_words(run_dir):
    vocab = read_vocab(run_dir / "vocab.txt")
    assert vocab[:2] == ["<pad>", "<unk>"]
    assert vocab[2:5] == ["to", "boston", "flights"]  # by frequency, then alphabetically; "Boston" folded
    assert read_vocab(run_dir / "slot_tags.txt") == ["O", "B-toloc.city_name", "I-toloc.city_name"]
    assert read_vocab(run_dir / "intents.txt") == ["atis_flight", "atis_airfare"]


def test_vocab_file_errors(tmp_path):
    with pytest.raises(ModelError, match="appears twice"):
        write_vocab(tmp_path / "v.txt", ["a", "b", "a"])
    with pytest.raises(ModelError, match="hold no whitespace"):
        write_vocab(tmp_path / "v.txt", ["a", "b c"])
    assert not (tmp_path / "v.txt").exists()
    with pytest.raises(ModelError, match="not found"):
        read_vocab(tmp_path / "v.txt")
    with pytest.raises(KeyError, match="unknown intents entry 'nope'"):
        Vocabulary(["a"], "intents").id("nope")


def test_direct_call_equals_unbatched_and_batched_map(run_dir):
    pre = slot_data.SlotPreprocessor(run_dir)
    examples = TRAIN + [SlotExample(("fly", "to", "Paris"), ("O", "O", "B-unseen"), "atis_unseen")]
    columns = slot_data._columns(examples)
    direct = [pre(tf.constant(a), tf.constant(b), tf.constant(c)) for a, b, c in zip(*columns)]
    mapped = list(tf.data.Dataset.from_tensor_slices(columns).map(pre))
    batched = next(iter(tf.data.Dataset.from_tensor_slices(columns).map(pre).padded_batch(
        len(examples), padding_values=(0, {"slot_probs": -1, "intent_probs": -1}))))
    for i, ((ids, labels), (m_ids, m_labels)) in enumerate(zip(direct, mapped)):
        n = len(examples[i].words)
        np.testing.assert_array_equal(ids, m_ids)
        np.testing.assert_array_equal(ids, batched[0][i, :n])
        np.testing.assert_array_equal(labels["slot_probs"], batched[1]["slot_probs"][i, :n])
        assert int(labels["intent_probs"]) == int(m_labels["intent_probs"]) == int(batched[1]["intent_probs"][i])
        assert np.all(batched[0][i, n:].numpy() == 0) and np.all(batched[1]["slot_probs"][i, n:].numpy() == -1)
    ids, labels = direct[3]
    assert ids.numpy().tolist() == [UNK_ID, 2, UNK_ID]  # "fly" and "paris" are unknown words
    assert labels["slot_probs"].numpy().tolist() == [0, 0, -1]  # an unseen tag is masked out of the loss
    assert int(labels["intent_probs"]) == -1


def test_training_batches_hold_every_example_once_per_epoch(run_dir):
    pre = slot_data.SlotPreprocessor(run_dir)
    many = TRAIN * 20
    dataset = slot_data.training_dataset(many, pre, batch_size=8, max_len=16, seed=1)
    for _ in range(2):
        sizes, lengths = 0, set()
        for ids, labels in dataset:
            sizes += ids.shape[0]
            lengths.add(ids.shape[1])
            assert labels["slot_probs"].shape == ids.shape
        assert sizes == len(many)
        assert lengths <= {3, 4}


def test_word_dropout_only_replaces_real_words_with_unk():
    ids = tf.constant([5, 6, 7, 0, 0], tf.int32)
    dropped, _ = slot_data.word_dropout(1.0, seed=0)(ids, {})
    assert dropped.numpy().tolist() == [UNK_ID, UNK_ID, UNK_ID, 0, 0]
    kept, _ = slot_data.word_dropout(0.0, seed=0)(ids, {})
    assert kept.numpy().tolist() == ids.numpy().tolist()


def test_too_long_examples_are_named(run_dir):
    from pipelines.readers import DataError

    with pytest.raises(DataError, match="train example 2 has 4 words, more than max_len=3"):
        slot_data.check_lengths([TRAIN[2], TRAIN[0]], 3, "train")
