"""Import user data: a folder of images per class, or a CSV file of texts."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

from labelloop.errors import ConfigError, DataNotFoundError
from labelloop.importers.common import (
    ID_KEY,
    TRUE_LABEL_KEY,
    ImportResult,
    relative_ref,
    scan_image_folder,
    write_outputs,
)
from labelloop.manifest import SOURCE_KEY, SOURCE_REF_KEY

logger = logging.getLogger(__name__)


def import_image_folder(root: Path, out_dir: Path) -> ImportResult:
    """Import a folder with one subfolder of images per class.

    Class names are the sorted subfolder names. Images are found recursively inside
    each class folder by extension (`IMAGE_EXTENSIONS`); hidden files and folders
    are skipped. Images are referenced in place, by paths relative to the manifest.

    Parameters
    ----------
    root : Path
        Folder whose subfolders are the classes.
    out_dir : Path
        Folder that receives the manifest and the label category file.

    Returns
    -------
    ImportResult

    Raises
    ------
    DataNotFoundError
        If ``root`` is not a folder, or it contains no class folder or no image.
    """
    root = Path(root)
    class_names, paths, labels = scan_image_folder(root)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    records = []
    for image_path, label in zip(paths, labels, strict=True):
        records.append(
            {
                SOURCE_REF_KEY: relative_ref(image_path, out_dir),
                ID_KEY: image_path.relative_to(root).as_posix(),
                TRUE_LABEL_KEY: label,
            }
        )
    return write_outputs(out_dir, records, class_names)


def import_csv(
    csv_path: Path,
    out_dir: Path,
    *,
    text_column: str | int,
    label_column: str | int | None = None,
    has_header: bool = True,
    class_names: Sequence[str] | None = None,
    delimiter: str = ",",
    encoding: str = "utf-8-sig",
) -> ImportResult:
    """Import a CSV file with one text item per row.

    Rows whose text is empty or that lack the text column are skipped with a
    warning. A row with an empty label cell gets no true label.

    Parameters
    ----------
    csv_path : Path
        The CSV file.
    out_dir : Path
        Folder that receives the manifest and the label category file.
    text_column : str or int
        Header name or zero-based index of the text column. Names need
        ``has_header=True``.
    label_column : str or int or None, default None
        Header name or zero-based index of the true-label column, if any.
    has_header : bool, default True
        Whether the first row is a header.
    class_names : sequence of str or None, default None
        Class names in label order. By default the sorted distinct labels of the
        label column, or no classes when there is no label column.
    delimiter : str, default ","
        Field delimiter.
    encoding : str, default "utf-8-sig"
        Text encoding. The default also accepts UTF-8 with a byte order mark.

    Returns
    -------
    ImportResult

    Raises
    ------
    DataNotFoundError
        If the CSV file is missing.
    ConfigError
        If a column name is not in the header, a column name is given without a
        header, a label is not one of ``class_names``, or no row has text.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataNotFoundError(f"CSV file {str(csv_path)!r} not found; check the path")
    with csv_path.open(newline="", encoding=encoding) as stream:
        rows = list(csv.reader(stream, delimiter=delimiter))

    if not rows:
        raise ConfigError(f"CSV file {str(csv_path)!r} is empty; add rows of text")

    header = rows[0] if has_header else None
    body_start = 2 if has_header else 1  # row number of the first data row
    body = rows[1:] if has_header else rows
    text_index = _column_index(text_column, header, csv_path, role="text_column")
    label_index = None
    if label_column is not None:
        label_index = _column_index(label_column, header, csv_path, role="label_column")

    records: list[dict] = []
    skipped: list[int] = []
    for row_number, row in enumerate(body, start=body_start):
        text = row[text_index] if text_index < len(row) else ""
        if not text.strip():
            skipped.append(row_number)
            continue
        record: dict = {SOURCE_KEY: text, ID_KEY: f"row-{row_number}"}
        if label_index is not None and label_index < len(row):
            label = row[label_index].strip()
            if label:
                record[TRUE_LABEL_KEY] = label
        records.append(record)

    if skipped:
        logger.warning(
            "%s: skipped %d rows with no text in column %r (first rows: %s)",
            csv_path,
            len(skipped),
            text_column,
            skipped[:10],
        )
    if not records:
        raise ConfigError(
            f"CSV file {str(csv_path)!r} has no row with text in column "
            f"{text_column!r}; check text_column and has_header"
        )

    found_labels = sorted({r[TRUE_LABEL_KEY] for r in records if TRUE_LABEL_KEY in r})
    if class_names is None:
        names = found_labels
    else:
        names = list(class_names)
        unknown = sorted(set(found_labels) - set(names))
        if unknown:
            raise ConfigError(
                f"CSV file {str(csv_path)!r} has labels {unknown} that are not in "
                f"class_names {names}; add them to class_names or fix the labels"
            )
    return write_outputs(Path(out_dir), records, names)


def _column_index(
    column: str | int, header: list[str] | None, csv_path: Path, *, role: str
) -> int:
    if isinstance(column, bool):
        raise ConfigError(f"{role} must be a column name or index, got {column!r}")
    if isinstance(column, int):
        if column < 0:
            raise ConfigError(
                f"{role} must be a zero-based column index, got {column}; count "
                "columns from 0"
            )
        return column
    if header is None:
        raise ConfigError(
            f"{role} {column!r} is a column name, but has_header is False; pass the "
            "column's zero-based index instead"
        )
    stripped = [name.strip() for name in header]
    if column not in stripped:
        raise ConfigError(
            f"{role} {column!r} is not a column of {str(csv_path)!r}; its header "
            f"has {stripped}"
        )
    return stripped.index(column)
