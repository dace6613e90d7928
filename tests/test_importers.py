"""Tests of the importers that turn folders, CSV files and datasets into manifests."""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelloop.config import read_label_category_file
from labelloop.data import DATA_DIR_ENV, data_dir
from labelloop.errors import ConfigError, DataNotFoundError
from labelloop.importers import (
    CIFAR10_CLASSES,
    DATASETS,
    LABEL_CATEGORY_FILE_NAME,
    TRUE_LABEL_KEY,
    ImportResult,
    clean_ag_news_text,
    import_ag_news,
    import_cifar10,
    import_csv,
    import_dataset,
    import_digits,
    import_image_folder,
    import_mnist,
    import_sms_spam,
    import_trec,
    write_label_category_file,
)
from labelloop.manifest import ManifestItem, read_manifest
from labelloop.media import load_image

LIMIT = 50


def _shared(subfolder: str) -> Path:
    """Return the shared data folder, or skip when ``subfolder`` is absent."""
    root = data_dir()
    if not (root / subfolder).exists():
        pytest.skip(
            f"shared dataset {subfolder!r} not found under {root}; set "
            f"{DATA_DIR_ENV} to the folder of labeled datasets to run this test"
        )
    return root


def _read_back(result: ImportResult) -> list[ManifestItem]:
    items, errors = read_manifest(result.manifest)
    assert errors == []
    assert len(items) == result.n_items
    return items


def _ids(result: ImportResult) -> list[str]:
    return [item.record["id"] for item in _read_back(result)]


def _check_outputs(result: ImportResult, class_names: list[str]) -> None:
    assert result.class_names == class_names
    category_file = result.manifest.parent / LABEL_CATEGORY_FILE_NAME
    assert read_label_category_file(category_file) == class_names
    for item in _read_back(result):
        if TRUE_LABEL_KEY in item.record:
            assert item.record[TRUE_LABEL_KEY] in class_names


# Shared datasets


def test_import_mnist_subset(tmp_path: Path) -> None:
    root = _shared("mnist")

    result = import_mnist(tmp_path / "out", limit=LIMIT, seed=3)

    assert result.n_items == LIMIT
    _check_outputs(result, [str(digit) for digit in range(10)])
    with gzip.open(root / "mnist" / "t10k-labels-idx1-ubyte.gz") as stream:
        raw_labels = np.frombuffer(stream.read(), dtype=np.uint8, offset=8)
    with gzip.open(root / "mnist" / "t10k-images-idx3-ubyte.gz") as stream:
        raw_images = np.frombuffer(stream.read(), dtype=np.uint8, offset=16)
    raw_images = raw_images.reshape(-1, 28, 28)
    assert raw_labels[0] == 7  # The first MNIST test digit is a 7.
    for item in _read_back(result):
        index = int(item.record["id"].rsplit("-", 1)[1])
        assert item.record[TRUE_LABEL_KEY] == str(raw_labels[index])
        pixels = np.asarray(load_image(item.source_ref, mode="L"))
        np.testing.assert_array_equal(pixels, raw_images[index])


def test_import_mnist_deterministic_subset(tmp_path: Path) -> None:
    _shared("mnist")

    first = import_mnist(tmp_path / "a", limit=LIMIT, seed=11)
    again = import_mnist(tmp_path / "b", limit=LIMIT, seed=11)
    other = import_mnist(tmp_path / "c", limit=LIMIT, seed=12)

    assert _ids(first) == _ids(again)
    assert _ids(first) != _ids(other)
    assert _ids(first) == sorted(_ids(first))


def test_import_mnist_bad_magic(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    header = (2049).to_bytes(4, "big") + (1).to_bytes(4, "big")
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + b"\0"))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(header + b"\0"))

    with pytest.raises(DataNotFoundError, match="magic number 2049, expected 2051"):
        import_mnist(tmp_path / "out", data_root=tmp_path / "data")


def test_import_mnist_truncated_idx(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    images = (2051).to_bytes(4, "big") + b"".join(
        size.to_bytes(4, "big") for size in (2, 28, 28)
    )
    labels = (2049).to_bytes(4, "big") + (2).to_bytes(4, "big") + b"\x01\x02"
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(images + b"\0"))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))

    with pytest.raises(DataNotFoundError, match="truncated"):
        import_mnist(tmp_path / "out", data_root=tmp_path / "data")


def test_import_cifar10_subset(tmp_path: Path) -> None:
    root = _shared("cifar10")

    result = import_cifar10(tmp_path / "out", limit=LIMIT, seed=0)

    assert result.n_items == LIMIT
    assert result.class_names[0] == "airplane"
    assert result.class_names[-1] == "truck"
    _check_outputs(result, list(CIFAR10_CLASSES))
    test_folder = (root / "cifar10" / "test").resolve()
    for item in _read_back(result):
        assert Path(item.record["source-ref"]).is_absolute()
        assert item.source_ref.parent == test_folder / item.record[TRUE_LABEL_KEY]
    assert not list((tmp_path / "out").rglob("*.jpg"))


def test_import_cifar10_deterministic_subset(tmp_path: Path) -> None:
    _shared("cifar10")

    first = import_cifar10(tmp_path / "a", limit=LIMIT, seed=5)
    again = import_cifar10(tmp_path / "b", limit=LIMIT, seed=5)

    assert _ids(first) == _ids(again)


def test_import_ag_news_subset(tmp_path: Path) -> None:
    _shared("ag_news")

    result = import_ag_news(tmp_path / "out", limit=LIMIT, seed=0)

    assert result.n_items == LIMIT
    _check_outputs(result, ["World", "Sports", "Business", "Sci/Tech"])
    again = import_ag_news(tmp_path / "again", limit=LIMIT, seed=0)
    assert _ids(result) == _ids(again)


def test_import_ag_news_known_items(tmp_path: Path) -> None:
    root = _shared("ag_news")

    result = import_ag_news(tmp_path / "out")
    items = _read_back(result)

    assert result.n_items == 7600
    counts = Counter(item.record[TRUE_LABEL_KEY] for item in items)
    assert counts == {"World": 1900, "Sports": 1900, "Business": 1900, "Sci/Tech": 1900}
    first = items[0]
    assert first.record[TRUE_LABEL_KEY] == "Business"  # class id 3
    assert first.source.startswith("Fears for T N pension after talks. Unions")
    assert "A second\nteam of rocketeers" in items[1].source
    assert "$10 million" in items[1].source
    with (root / "ag_news" / "test.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    class_lines = (root / "ag_news" / "classes.txt").read_text().split()
    for index in (0, 1, 2500, 7599):
        expected = class_lines[int(rows[index][0]) - 1]
        assert items[index].record[TRUE_LABEL_KEY] == expected
    assert not any("\\" in item.source for item in items)


def test_clean_ag_news_text_escapes() -> None:
    assert clean_ag_news_text("a second\\team") == "a second\nteam"
    assert clean_ag_news_text("end.\\\\Next") == "end.\nNext"
    assert clean_ag_news_text("won \\$10") == "won $10"
    assert clean_ag_news_text("Eriksson doesn #39;t") == "Eriksson doesn't"
    assert clean_ag_news_text("Inc. &lt;TXN.N&gt;") == "Inc. <TXN.N>"
    assert clean_ag_news_text("threat #151;prostate") == "threat\u2014prostate"


def test_import_trec_test_split(tmp_path: Path) -> None:
    _shared("trec")

    result = import_trec(tmp_path / "out", split="test")
    items = _read_back(result)

    assert result.n_items == 500
    _check_outputs(result, ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"])
    assert items[0].record[TRUE_LABEL_KEY] == "NUM"
    assert items[0].source == "How far is it from Denver to Aspen ?"
    assert items[1].record[TRUE_LABEL_KEY] == "LOC"
    assert items[-1].source == "What is e-coli ?"
    assert items[-1].record[TRUE_LABEL_KEY] == "DESC"


def test_import_trec_train_latin1(tmp_path: Path) -> None:
    _shared("trec")

    result = import_trec(tmp_path / "out", split="train")
    items = _read_back(result)

    assert result.n_items == 5452
    assert items[0].record[TRUE_LABEL_KEY] == "DESC"
    assert items[0].source == "How did serfdom develop in and then leave Russia ?"
    assert "sister\u00f0city" in items[65].source
    assert len({item.record[TRUE_LABEL_KEY] for item in items}) == 6


def test_import_trec_subset_and_split(tmp_path: Path) -> None:
    _shared("trec")

    result = import_trec(tmp_path / "out", split="train", limit=LIMIT, seed=2)
    again = import_trec(tmp_path / "again", split="train", limit=LIMIT, seed=2)

    assert result.n_items == LIMIT
    assert _ids(result) == _ids(again)
    with pytest.raises(ConfigError, match="'dev'"):
        import_trec(tmp_path / "bad", split="dev")


def test_import_sms_spam_all(tmp_path: Path) -> None:
    _shared("sms_spam")

    result = import_sms_spam(tmp_path / "out")
    items = _read_back(result)

    _check_outputs(result, ["ham", "spam"])
    counts = Counter(item.record[TRUE_LABEL_KEY] for item in items)
    assert counts == {"ham": 4827, "spam": 747}
    assert items[0].source.startswith("Go until jurong point")
    assert items[2].record[TRUE_LABEL_KEY] == "spam"


def test_import_sms_spam_subset(tmp_path: Path) -> None:
    _shared("sms_spam")

    result = import_sms_spam(tmp_path / "out", limit=LIMIT, seed=9)
    again = import_sms_spam(tmp_path / "again", limit=LIMIT, seed=9)

    assert result.n_items == LIMIT
    assert _ids(result) == _ids(again)


def test_import_dataset_all_names(tmp_path: Path) -> None:
    for folder in ("mnist", "cifar10", "ag_news", "trec", "sms_spam"):
        _shared(folder)
    expected_classes = {
        "mnist": 10,
        "cifar10": 10,
        "ag_news": 4,
        "trec": 6,
        "sms_spam": 2,
        "digits": 10,
    }
    assert set(DATASETS) == set(expected_classes)

    for name, n_classes in expected_classes.items():
        result = import_dataset(name, tmp_path / name, limit=LIMIT, seed=1)

        assert result.n_items == LIMIT
        assert len(result.class_names) == n_classes
        _read_back(result)


# Missing data and invalid arguments


@pytest.mark.parametrize("name", ["mnist", "cifar10", "ag_news", "trec", "sms_spam"])
def test_import_dataset_missing_data(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-data"
    empty.mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(empty))

    with pytest.raises(DataNotFoundError) as caught:
        import_dataset(name, tmp_path / "out", limit=5)

    message = str(caught.value)
    assert str(empty / name) in message
    assert DATA_DIR_ENV in message


def test_import_dataset_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'imagenet'.*mnist"):
        import_dataset("imagenet", tmp_path)


@pytest.mark.parametrize("limit", [0, -3, 2.5, True, "10"])
def test_import_digits_invalid_limit(tmp_path: Path, limit: object) -> None:
    with pytest.raises(ConfigError, match="limit must be a positive integer"):
        import_digits(tmp_path, limit=limit)  # type: ignore[arg-type]


# Bundled digits


def test_import_digits_all(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()

    result = import_digits(tmp_path / "out")
    items = _read_back(result)

    assert result.n_items == 1797
    _check_outputs(result, [str(digit) for digit in range(10)])
    for index in (0, 1, 1000, 1796):
        item = items[index]
        assert item.record["id"] == f"digits-{index:04d}"
        assert item.record[TRUE_LABEL_KEY] == str(digits.target[index])
        with Image.open(item.source_ref) as png:
            assert png.mode == "L"
            assert png.size == (8, 8)
            pixels = np.asarray(png)
        expected = np.rint(digits.images[index] * 255 / 16).astype(np.uint8)
        np.testing.assert_array_equal(pixels, expected)
        assert np.all(pixels[digits.images[index] == 16] == 255)


def test_import_digits_seeded_subset(tmp_path: Path) -> None:
    first = import_digits(tmp_path / "a", limit=LIMIT, seed=4)
    again = import_digits(tmp_path / "b", limit=LIMIT, seed=np.random.default_rng(4))
    other = import_digits(tmp_path / "c", limit=LIMIT, seed=5)
    everything = import_digits(tmp_path / "d", limit=5000)

    assert first.n_items == LIMIT
    assert _ids(first) == _ids(again)
    assert _ids(first) != _ids(other)
    assert everything.n_items == 1797
    assert len(list((tmp_path / "a" / "images").glob("*.png"))) == LIMIT


# Image folders


def _make_image(path: Path, color: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}[path.suffix.lower()]
    Image.new("RGB", (4, 4), color).save(path, format=fmt)


def test_import_image_folder_classes(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    _make_image(root / "zebra" / "z1.JPG", (0, 0, 0))
    _make_image(root / "zebra" / "nested" / "z2.png", (0, 0, 0))
    _make_image(root / "ant" / "a1.Png", (9, 9, 9))
    _make_image(root / "ant" / "a2.jpeg", (9, 9, 9))
    _make_image(root / "ant" / ".hidden.png", (9, 9, 9))
    (root / "ant" / "notes.txt").write_text("not an image", encoding="utf-8")
    (root / "README.md").write_text("top-level file", encoding="utf-8")
    (root / ".cache").mkdir()

    result = import_image_folder(root, tmp_path / "out")
    items = _read_back(result)

    _check_outputs(result, ["ant", "zebra"])
    assert result.n_items == 4
    assert [item.record["id"] for item in items] == [
        "ant/a1.Png",
        "ant/a2.jpeg",
        "zebra/nested/z2.png",
        "zebra/z1.JPG",
    ]
    assert [item.record[TRUE_LABEL_KEY] for item in items] == [
        "ant",
        "ant",
        "zebra",
        "zebra",
    ]
    assert items[0].record["source-ref"] == "../photos/ant/a1.Png"
    assert items[0].source_ref == (root / "ant" / "a1.Png").resolve()


def test_import_image_folder_no_classes(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    _make_image(root / "loose.png", (0, 0, 0))

    with pytest.raises(DataNotFoundError, match="no class subfolders"):
        import_image_folder(root, tmp_path / "out")


def test_import_image_folder_no_images(tmp_path: Path) -> None:
    (tmp_path / "root" / "cat").mkdir(parents=True)

    with pytest.raises(DataNotFoundError, match="no images"):
        import_image_folder(tmp_path / "root", tmp_path / "out")


def test_import_image_folder_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="not found"):
        import_image_folder(tmp_path / "absent", tmp_path / "out")


# CSV files


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as stream:
        csv.writer(stream).writerows(rows)
    return path


def test_import_csv_named_columns(tmp_path: Path) -> None:
    csv_path = _write_csv(
        tmp_path / "reviews.csv",
        [
            ["label", "text"],
            ["pos", "Great movie"],
            ["neg", "Line one\nline two, with a comma"],
            ["pos", "   "],
            ["", "No label here"],
        ],
    )

    result = import_csv(
        csv_path, tmp_path / "out", text_column="text", label_column="label"
    )
    items = _read_back(result)

    _check_outputs(result, ["neg", "pos"])
    assert result.n_items == 3
    assert [item.source for item in items] == [
        "Great movie",
        "Line one\nline two, with a comma",
        "No label here",
    ]
    assert [item.record["id"] for item in items] == ["row-2", "row-3", "row-5"]
    assert items[1].record[TRUE_LABEL_KEY] == "neg"
    assert TRUE_LABEL_KEY not in items[2].record


def test_import_csv_index_no_header(tmp_path: Path) -> None:
    csv_path = _write_csv(tmp_path / "plain.csv", [["a", "first"], ["b", "second"]])

    result = import_csv(
        csv_path,
        tmp_path / "out",
        text_column=1,
        label_column=0,
        has_header=False,
        class_names=["b", "a", "c"],
    )
    items = _read_back(result)

    assert result.class_names == ["b", "a", "c"]
    assert [item.source for item in items] == ["first", "second"]
    assert [item.record[TRUE_LABEL_KEY] for item in items] == ["a", "b"]


def test_import_csv_text_only(tmp_path: Path) -> None:
    csv_path = _write_csv(tmp_path / "texts.csv", [["body"], ["one"], ["two"]])

    result = import_csv(csv_path, tmp_path / "out", text_column="body")

    assert result.n_items == 2
    assert result.class_names == []
    assert all(TRUE_LABEL_KEY not in item.record for item in _read_back(result))


def test_import_csv_invalid_arguments(tmp_path: Path) -> None:
    csv_path = _write_csv(tmp_path / "data.csv", [["label", "text"], ["x", "hello"]])
    out = tmp_path / "out"

    with pytest.raises(ConfigError, match="'body' is not a column"):
        import_csv(csv_path, out, text_column="body")
    with pytest.raises(ConfigError, match="has_header is False"):
        import_csv(csv_path, out, text_column="text", has_header=False)
    with pytest.raises(ConfigError, match=r"labels \['x'\]"):
        import_csv(
            csv_path,
            out,
            text_column="text",
            label_column="label",
            class_names=["y", "z"],
        )
    with pytest.raises(ConfigError, match="no row with text"):
        import_csv(csv_path, out, text_column=5)
    with pytest.raises(DataNotFoundError, match="absent.csv"):
        import_csv(tmp_path / "absent.csv", out, text_column=0)


# Label category file


def test_write_label_category_file_format(tmp_path: Path) -> None:
    path = tmp_path / "labels" / "class-labels.json"

    write_label_category_file(path, ["cat", "dog", "é"])

    document = json.loads(path.read_text(encoding="utf-8"))
    assert document == {
        "document-version": "2018-11-28",
        "labels": [{"label": "cat"}, {"label": "dog"}, {"label": "é"}],
    }
    assert read_label_category_file(path) == ["cat", "dog", "é"]


def test_write_label_category_file_invalid(tmp_path: Path) -> None:
    path = tmp_path / "class-labels.json"

    with pytest.raises(ConfigError, match="'cat' is listed twice"):
        write_label_category_file(path, ["cat", "cat"])
    with pytest.raises(ConfigError, match="non-empty"):
        write_label_category_file(path, ["cat", " "])
    assert not path.exists()
