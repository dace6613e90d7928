"""Import the shared benchmark datasets: MNIST, CIFAR-10, AG News, TREC, SMS Spam.

The files are read from `labelloop.data.data_dir` unless ``data_root`` is given.
scikit-learn's bundled digits need no shared data. With ``limit``, an importer keeps
a random subset of that size, drawn from ``seed`` and written in source order, so the
same seed always gives the same items.
"""

from __future__ import annotations

import csv
import gzip
import html
import logging
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from labelloop.data import DATA_DIR_ENV, data_dir
from labelloop.errors import ConfigError, DataNotFoundError
from labelloop.importers.common import (
    ID_KEY,
    TRUE_LABEL_KEY,
    ImportResult,
    scan_image_folder,
    subset_indices,
    write_image_arrays,
    write_outputs,
)
from labelloop.manifest import SOURCE_KEY, SOURCE_REF_KEY

logger = logging.getLogger(__name__)

#: Class names of the 10 CIFAR-10 classes, in the dataset's label order.
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
#: The 6 coarse TREC question classes, in sorted order.
TREC_COARSE_CLASSES = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
#: SMS Spam Collection classes.
SMS_SPAM_CLASSES = ("ham", "spam")
DIGIT_CLASSES = tuple(str(digit) for digit in range(10))

_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
_TREC_FILES = {"train": "train_5500.label", "test": "TREC_10.label"}


def import_mnist(
    out_dir: Path,
    *,
    limit: int | None = None,
    seed: int | np.random.Generator = 0,
    data_root: Path | None = None,
) -> ImportResult:
    """Import the MNIST test set (10,000 handwritten digits, 28x28 grayscale).

    Reads ``mnist/t10k-images-idx3-ubyte.gz`` and ``mnist/t10k-labels-idx1-ubyte.gz``
    (IDX format) and writes each selected digit as a PNG file under
    ``out_dir/images/``. Class names are "0" to "9".

    Parameters
    ----------
    out_dir : Path
        Folder that receives the manifest, the label category file and the images.
    limit : int or None, default None
        Number of items to keep, drawn at random. None keeps all.
    seed : int or numpy.random.Generator, default 0
        Seed of the subset drawn when ``limit`` is given.
    data_root : Path or None, default None
        Shared data folder. None uses `labelloop.data.data_dir`.

    Returns
    -------
    ImportResult

    Raises
    ------
    DataNotFoundError
        If a file is missing or not a valid IDX file.
    ConfigError
        If ``limit`` is not a positive integer.
    """
    folder = _shared_root(data_root) / "mnist"
    images_path = _require_file(folder / "t10k-images-idx3-ubyte.gz")
    labels_path = _require_file(folder / "t10k-labels-idx1-ubyte.gz")
    images = _read_idx(images_path, magic=_IDX_IMAGES_MAGIC, ndim=3)
    labels = _read_idx(labels_path, magic=_IDX_LABELS_MAGIC, ndim=1)
    if len(images) != len(labels):
        raise DataNotFoundError(
            f"{images_path} contains {len(images)} images but {labels_path} contains "
            f"{len(labels)} labels; replace both with the official MNIST test files"
        )
    if labels.size and int(labels.max()) > 9:
        raise DataNotFoundError(
            f"{labels_path} contains label {int(labels.max())}, but MNIST labels are "
            "0..9; replace it with the official MNIST test labels"
        )

    indices = subset_indices(len(labels), limit=limit, seed=seed)
    ids = [f"mnist-test-{index:05d}" for index in indices]
    true_labels = [DIGIT_CLASSES[labels[index]] for index in indices]
    return write_image_arrays(
        Path(out_dir), images[indices], ids, true_labels, list(DIGIT_CLASSES)
    )


def import_cifar10(
    out_dir: Path,
    *,
    limit: int | None = None,
    seed: int | np.random.Generator = 0,
    data_root: Path | None = None,
) -> ImportResult:
    """Import the CIFAR-10 test set (10,000 RGB 32x32 JPEG files, 10 classes).

    Reads ``cifar10/test/<class>/*.jpg`` and references the JPEG files in place by
    absolute path, so the manifest stays valid wherever it is moved.

    Parameters
    ----------
    out_dir : Path
        Folder that receives the manifest and the label category file.
    limit : int or None, default None
        Number of items to keep, drawn at random. None keeps all.
    seed : int or numpy.random.Generator, default 0
        Seed of the subset drawn when ``limit`` is given.
    data_root : Path or None, default None
        Shared data folder. None uses `labelloop.data.data_dir`.

    Returns
    -------
    ImportResult

    Raises
    ------
    DataNotFoundError
        If the folder is missing or its class folders are not the 10 CIFAR-10
        classes.
    ConfigError
        If ``limit`` is not a positive integer.
    """
    root = _require_dir(_shared_root(data_root) / "cifar10" / "test")
    class_names, paths, labels = scan_image_folder(root)
    if tuple(class_names) != CIFAR10_CLASSES:
        raise DataNotFoundError(
            f"{root} has class folders {class_names}, expected the CIFAR-10 classes "
            f"{list(CIFAR10_CLASSES)}; restore the dataset folder"
        )

    records = []
    for index in subset_indices(len(paths), limit=limit, seed=seed):
        image_path = paths[index]
        records.append(
            {
                SOURCE_REF_KEY: str(image_path.resolve()),
                ID_KEY: f"cifar10-test-{labels[index]}-{image_path.stem}",
                TRUE_LABEL_KEY: labels[index],
            }
        )
    return write_outputs(Path(out_dir), records, class_names)


def import_ag_news(
    out_dir: Path,
    *,
    limit: int | None = None,
    seed: int | np.random.Generator = 0,
    data_root: Path | None = None,
) -> ImportResult:
    """Import the AG News test set (7,600 news items, 4 topics).

    Reads ``ag_news/test.csv`` (no header: class id 1-4, title, description) and
    ``ag_news/classes.txt`` (one class name per line, for ids 1-4). An item's text
    is its title and description joined into one paragraph, cleaned by
    `clean_ag_news_text`.

    Parameters
    ----------
    out_dir : Path
        Folder that receives the manifest and the label category file.
    limit : int or None, default None
        Number of items to keep, drawn at random. None keeps all.
    seed : int or numpy.random.Generator, default 0
        Seed of the subset drawn when ``limit`` is given.
    data_root : Path or None, default None
        Shared data folder. None uses `labelloop.data.data_dir`.

    Returns
    -------
    ImportResult

    Raises
    ------
    DataNotFoundError
        If a file is missing, or a row is malformed or has an unknown class id.
    ConfigError
        If ``limit`` is not a positive integer.
    """
    folder = _shared_root(data_root) / "ag_news"
    csv_path = _require_file(folder / "test.csv")
    classes_path = _require_file(folder / "classes.txt")
    class_names = _read_lines(classes_path, encoding="utf-8")
    if len(class_names) != 4:
        raise DataNotFoundError(
            f"{classes_path} lists {len(class_names)} classes, expected the 4 AG News "
            "classes; restore the original classes.txt"
        )
    with csv_path.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream))

    texts: list[str] = []
    labels: list[str] = []
    for row_number, row in enumerate(rows, start=1):
        if len(row) != 3 or row[0] not in {str(i) for i in range(1, 5)}:
            raise DataNotFoundError(
                f"{csv_path} row {row_number} is {row[:3]!r}, expected class id 1-4, "
                "title and description; restore the original AG News test.csv"
            )
        labels.append(class_names[int(row[0]) - 1])
        texts.append(_join_title(row[1], row[2]))

    records = []
    for index in subset_indices(len(texts), limit=limit, seed=seed):
        records.append(
            {
                SOURCE_KEY: texts[index],
                ID_KEY: f"ag_news-test-{index:04d}",
                TRUE_LABEL_KEY: labels[index],
            }
        )
    return write_outputs(Path(out_dir), records, class_names)


def clean_ag_news_text(text: str) -> str:
    r"""Undo the escaping of AG News text.

    The files mark a line break with a single backslash directly followed by the
    next word (``"a second\team"``), write ``\$`` for a dollar sign, and store HTML
    character references without their ``&`` (``"doesn #39;t"``). This function
    turns each run of backslashes into one newline, ``\$`` into ``$``, and
    character references and HTML entities into the characters they represent.

    Parameters
    ----------
    text : str
        A title or description from AG News.

    Returns
    -------
    str
        The cleaned text, stripped of surrounding whitespace.
    """
    # NOTE: the dataset's readme.txt describes a newline as a backslash followed by
    # "n". In test.csv the letter after a backslash starts the next word
    # ("social\network"), so a backslash alone is the line break.
    text = text.replace("\\$", "$")
    text = re.sub(r"\\+", "\n", text)
    # Numeric references lack their "&" and follow a space: "doesn #39;t".
    text = re.sub(r" ?#(\d+);", lambda match: html.unescape(f"&#{match[1]};"), text)
    return html.unescape(text).strip()


def import_trec(
    out_dir: Path,
    *,
    split: str = "train",
    limit: int | None = None,
    seed: int | np.random.Generator = 0,
    data_root: Path | None = None,
) -> ImportResult:
    """Import the TREC question classification set with its 6 coarse classes.

    Reads ``trec/train_5500.label`` (5,452 questions, Latin-1) or
    ``trec/TREC_10.label`` (500 questions). Each line is ``COARSE:fine question``.
    The coarse class is the label and the question is the text.

    Parameters
    ----------
    out_dir : Path
        Folder that receives the manifest and the label category file.
    split : {"train", "test"}, default "train"
        Which file to read.
    limit : int or None, default None
        Number of items to keep, drawn at random. None keeps all.
    seed : int or numpy.random.Generator, default 0
        Seed of the subset drawn when ``limit`` is given.
    data_root : Path or None, default None
        Shared data folder. None uses `labelloop.data.data_dir`.

    Returns
    -------
    ImportResult

    Raises
    ------
    DataNotFoundError
        If the file is missing or a line is not ``COARSE:fine question``.
    ConfigError
        If ``split`` is unknown or ``limit`` is not a positive integer.
    """
    if split not in _TREC_FILES:
        raise ConfigError(
            f"TREC split must be one of {', '.join(_TREC_FILES)}, got {split!r}"
        )
    path = _require_file(_shared_root(data_root) / "trec" / _TREC_FILES[split])

    texts: list[str] = []
    labels: list[str] = []
    for line_number, line in enumerate(_read_lines(path, encoding="latin-1"), 1):
        tag, _, question = line.partition(" ")
        coarse = tag.partition(":")[0]
        if coarse not in TREC_COARSE_CLASSES or not question.strip():
            raise DataNotFoundError(
                f"{path} line {line_number} is {line!r}, expected 'COARSE:fine "
                "question' with a coarse class in "
                f"{', '.join(TREC_COARSE_CLASSES)}; restore the original file"
            )
        labels.append(coarse)
        texts.append(question.strip())

    records = []
    for index in subset_indices(len(texts), limit=limit, seed=seed):
        records.append(
            {
                SOURCE_KEY: texts[index],
                ID_KEY: f"trec-{split}-{index:04d}",
                TRUE_LABEL_KEY: labels[index],
            }
        )
    return write_outputs(Path(out_dir), records, list(TREC_COARSE_CLASSES))


def import_sms_spam(
    out_dir: Path,
    *,
    limit: int | None = None,
    seed: int | np.random.Generator = 0,
    data_root: Path | None = None,
) -> ImportResult:
    """Import the SMS Spam Collection (5,574 messages, 747 of them spam).

    Reads ``sms_spam/SMSSpamCollection``, one ``label<TAB>text`` per line. Classes
    are "ham" and "spam".

    Parameters
    ----------
    out_dir : Path
        Folder that receives the manifest and the label category file.
    limit : int or None, default None
        Number of items to keep, drawn at random. None keeps all.
    seed : int or numpy.random.Generator, default 0
        Seed of the subset drawn when ``limit`` is given.
    data_root : Path or None, default None
        Shared data folder. None uses `labelloop.data.data_dir`.

    Returns
    -------
    ImportResult

    Raises
    ------
    DataNotFoundError
        If the file is missing or a line is not ``ham`` or ``spam``, a tab and text.
    ConfigError
        If ``limit`` is not a positive integer.
    """
    path = _require_file(_shared_root(data_root) / "sms_spam" / "SMSSpamCollection")

    texts: list[str] = []
    labels: list[str] = []
    for line_number, line in enumerate(_read_lines(path, encoding="utf-8"), 1):
        label, _, text = line.partition("\t")
        if label not in SMS_SPAM_CLASSES or not text.strip():
            raise DataNotFoundError(
                f"{path} line {line_number} is {line[:60]!r}, expected 'ham' or "
                "'spam', a tab and the message; restore the original file"
            )
        labels.append(label)
        texts.append(text)

    records = []
    for index in subset_indices(len(texts), limit=limit, seed=seed):
        records.append(
            {
                SOURCE_KEY: texts[index],
                ID_KEY: f"sms_spam-{index:04d}",
                TRUE_LABEL_KEY: labels[index],
            }
        )
    return write_outputs(Path(out_dir), records, list(SMS_SPAM_CLASSES))


def import_digits(
    out_dir: Path,
    *,
    limit: int | None = None,
    seed: int | np.random.Generator = 0,
) -> ImportResult:
    """Import scikit-learn's bundled digits (1,797 8x8 grayscale images, 10 classes).

    Needs no shared data. Pixel values 0..16 are scaled to 0..255 and each selected
    image is written as an 8x8 PNG file under ``out_dir/images/``. Class names are
    "0" to "9".

    Parameters
    ----------
    out_dir : Path
        Folder that receives the manifest, the label category file and the images.
    limit : int or None, default None
        Number of items to keep, drawn at random. None keeps all.
    seed : int or numpy.random.Generator, default 0
        Seed of the subset drawn when ``limit`` is given.

    Returns
    -------
    ImportResult

    Raises
    ------
    ConfigError
        If ``limit`` is not a positive integer.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(np.asarray(digits.images) * (255.0 / 16.0))
    images = np.clip(pixels, 0, 255).astype(np.uint8)
    targets = np.asarray(digits.target)

    indices = subset_indices(len(targets), limit=limit, seed=seed)
    ids = [f"digits-{index:04d}" for index in indices]
    true_labels = [DIGIT_CLASSES[targets[index]] for index in indices]
    return write_image_arrays(
        Path(out_dir), images[indices], ids, true_labels, list(DIGIT_CLASSES)
    )


#: Importers of the named datasets, for `import_dataset`.
DATASETS: dict[str, Callable[..., ImportResult]] = {
    "mnist": import_mnist,
    "cifar10": import_cifar10,
    "ag_news": import_ag_news,
    "trec": import_trec,
    "sms_spam": import_sms_spam,
    "digits": import_digits,
}


def import_dataset(name: str, out_dir: Path, **kwargs: object) -> ImportResult:
    """Import a named dataset from `DATASETS`.

    Parameters
    ----------
    name : str
        A key of `DATASETS`: "mnist", "cifar10", "ag_news", "trec", "sms_spam" or
        "digits".
    out_dir : Path
        Folder that receives the manifest and the label category file.
    **kwargs
        Keyword arguments of the dataset's importer (``limit``, ``seed``,
        ``data_root``, and ``split`` for TREC).

    Returns
    -------
    ImportResult

    Raises
    ------
    ConfigError
        If ``name`` is unknown.
    DataNotFoundError
        If the dataset's files are missing from the data folder.
    """
    try:
        importer = DATASETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown dataset {name!r}; choose one of {', '.join(sorted(DATASETS))}"
        ) from None
    return importer(out_dir, **kwargs)


def _shared_root(data_root: Path | None) -> Path:
    return data_dir() if data_root is None else Path(data_root)


def _require_file(path: Path) -> Path:
    if path.is_file():
        return path
    raise DataNotFoundError(
        f"file {str(path)!r} not found; put the shared datasets there or set "
        f"{DATA_DIR_ENV} to the folder that holds them"
    )


def _require_dir(path: Path) -> Path:
    if path.is_dir():
        return path
    raise DataNotFoundError(
        f"folder {str(path)!r} not found; put the shared datasets there or set "
        f"{DATA_DIR_ENV} to the folder that holds them"
    )


def _read_lines(path: Path, *, encoding: str) -> list[str]:
    """Return the non-blank lines of a text file, without line endings."""
    text = path.read_text(encoding=encoding)
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


def _join_title(title: str, description: str) -> str:
    title = clean_ag_news_text(title)
    description = clean_ag_news_text(description)
    if not title or not description:
        return title or description
    # A title that ends a sentence already needs no added period.
    separator = " " if title.endswith((".", "!", "?")) else ". "
    return title + separator + description


def _read_idx(path: Path, *, magic: int, ndim: int) -> np.ndarray:
    """Read a gzipped IDX file of unsigned bytes into an array."""
    try:
        with gzip.open(path, "rb") as stream:
            data = stream.read()
    except (OSError, EOFError) as exc:
        raise DataNotFoundError(
            f"{path} is not a readable gzip file ({exc}); replace it with the "
            "official MNIST file"
        ) from None

    header_size = 4 + 4 * ndim
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic:
        raise DataNotFoundError(
            f"{path} starts with magic number {found}, expected {magic} for an IDX "
            f"file of {ndim}-dimensional unsigned bytes; replace it with the "
            "official MNIST file"
        )
    shape = tuple(
        int(size) for size in np.frombuffer(data, dtype=">u4", count=ndim, offset=4)
    )
    expected = header_size + int(np.prod(shape))
    if len(data) != expected:
        raise DataNotFoundError(
            f"{path} has {len(data)} bytes, but its header (shape {shape}) needs "
            f"{expected}; the file is truncated, so replace it with the official "
            "MNIST file"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)
