from pathlib import Path

import pytest

from pipelines.readers import DataError, SlotExample, read_dataset, read_split


def write_split(folder: Path, words: str, tags: str, labels: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "seq.in").write_text(words)
    (folder / "seq.out").write_text(tags)
    (folder / "label").write_text(labels)
    return folder


def test_reads_aligned_lines_in_order(tmp_path):
    folder = write_split(
        tmp_path / "train",
        "show flights to boston\ni want to fly from new york\n",
        "O O O B-toloc.city_name\nO O O O O B-fromloc.city_name I-fromloc.city_name\n",
        "atis_flight\natis_flight#atis_airfare\n",
    )
    examples = read_split(folder)
    assert examples[0] == SlotExample(("show", "flights", "to", "boston"), ("O", "O", "O", "B-toloc.city_name"), "atis_flight")
    assert examples[1].words[-2:] == ("new", "york")
    assert examples[1].intent == "atis_flight#atis_airfare"


def test_word_and_tag_count_mismatch_names_the_line(tmp_path):
    folder = write_split(tmp_path / "train", "a b\nc d e\n", "O O\nO O\n", "x\ny\n")
    with pytest.raises(DataError, match=r"line 2 has 3 words in seq.in but 2 tags in seq.out"):
        read_split(folder)


def test_files_with_different_line_counts_are_rejected(tmp_path):
    folder = write_split(tmp_path / "train", "a\nb\n", "O\nO\n", "x\n")
    with pytest.raises(DataError, match=r"different line counts \(seq.in has 2, seq.out has 2, label has 1\)"):
        read_split(folder)


@pytest.mark.parametrize(
    "words, expected",
    [("", r"seq.in is empty"), ("a\n\nb\n", r"seq.in line 2 is empty"), (b"caf\xe9\n", r"is not UTF-8")],
)
def test_empty_or_undecodable_files_are_rejected(tmp_path, words, expected):
    folder = tmp_path / "train"
    folder.mkdir()
    (folder / "seq.in").write_bytes(words.encode() if isinstance(words, str) else words)
    lines = max(1, (words.count("\n") if isinstance(words, str) else 1))
    (folder / "seq.out").write_text("O\n" * lines)
    (folder / "label").write_text("x\n" * lines)
    with pytest.raises(DataError, match=expected):
        read_split(folder)


def test_missing_file_is_named(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    (folder / "seq.in").write_text("a\n")
    with pytest.raises(DataError, match=r"missing data file: .*seq.out"):
        read_split(folder)


def test_dataset_accepts_dev_as_valid_and_requires_train(tmp_path):
    write_split(tmp_path / "train", "a b\n", "O O\n", "x\n")
    write_split(tmp_path / "dev", "c\n", "O\n", "y\n")
    splits = read_dataset(tmp_path)
    assert sorted(splits) == ["train", "valid"]
    assert splits["valid"][0].intent == "y"
    with pytest.raises(DataError, match="has no train/ folder"):
        read_dataset(tmp_path / "dev")
    with pytest.raises(DataError, match="data folder not found"):
        read_dataset(tmp_path / "nowhere")


def test_windows_line_endings_are_read(tmp_path):
    folder = write_split(tmp_path / "train", "a b\r\n", "O B-x\r\n", "y\r\n")
    assert read_split(folder) == [SlotExample(("a", "b"), ("O", "B-x"), "y")]
