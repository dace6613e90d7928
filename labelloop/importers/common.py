"""Shared parts of the importers: manifest keys, the result type and output writing."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from labelloop.config import LABEL_CATEGORY_DOCUMENT_VERSION
from labelloop.errors import ConfigError, DataNotFoundError
from labelloop.manifest import SOURCE_REF_KEY, write_manifest

logger = logging.getLogger(__name__)

#: Manifest key of an item's true class name, read only by the simulated workforce.
TRUE_LABEL_KEY = "true-label"
#: Manifest key of an item's identifier within its source dataset.
ID_KEY = "id"
#: File name of the manifest that every importer writes into its output folder.
MANIFEST_NAME = "manifest.jsonl"
#: File name of the label category file that every importer writes.
LABEL_CATEGORY_FILE_NAME = "class-labels.json"
#: Subfolder of the output folder for the PNG files that importers write.
IMAGES_DIR_NAME = "images"
#: File extensions that `import_image_folder` treats as images (case-insensitive).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
)


@dataclass(frozen=True)
class ImportResult:
    """Paths and counts of what an importer wrote.

    Attributes
    ----------
    manifest : Path
        The JSON Lines input manifest.
    class_names : list of str
        Class names in label order, as in the label category file.
    n_items : int
        Number of manifest lines.
    """

    manifest: Path
    class_names: list[str]
    n_items: int


def write_label_category_file(path: Path, class_names: Sequence[str]) -> None:
    """Write a Ground Truth label category file.

    The file is ``{"document-version": "2018-11-28", "labels": [{"label": ...}]}``
    with one entry per class, in the given order.

    Parameters
    ----------
    path : Path
        Output JSON file. Its folder is created if needed.
    class_names : sequence of str
        Distinct, non-empty class names.

    Raises
    ------
    ConfigError
        If a name is empty or not a string, or a name is listed twice.
    """
    seen: set[str] = set()
    for name in class_names:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(
                f"class names must be non-empty strings, got {name!r}; remove it or "
                "give the class a name"
            )
        if name in seen:
            raise ConfigError(
                f"class name {name!r} is listed twice; list each class once"
            )
        seen.add(name)

    document = {
        "document-version": LABEL_CATEGORY_DOCUMENT_VERSION,
        "labels": [{"label": name} for name in class_names],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )


def subset_indices(
    n_items: int, *, limit: int | None, seed: int | np.random.Generator
) -> np.ndarray:
    """Return sorted indices of a random subset of ``limit`` items, or all items."""
    if limit is None:
        return np.arange(n_items)
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)):
        raise ConfigError(f"limit must be a positive integer or None, got {limit!r}")
    if limit < 1:
        raise ConfigError(f"limit must be a positive integer or None, got {limit!r}")
    if limit >= n_items:
        return np.arange(n_items)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_items, size=int(limit), replace=False))


def scan_image_folder(root: Path) -> tuple[list[str], list[Path], list[str]]:
    """Return the sorted class names, the image paths and each image's class."""
    if not root.is_dir():
        raise DataNotFoundError(
            f"image folder {str(root)!r} not found; pass a folder with one "
            "subfolder of images per class"
        )
    class_dirs = sorted(
        child
        for child in root.iterdir()
        if child.is_dir() and not child.name.startswith(".")
    )
    if not class_dirs:
        raise DataNotFoundError(
            f"image folder {str(root)!r} has no class subfolders; put each class's "
            "images in a subfolder named after the class"
        )

    paths: list[Path] = []
    labels: list[str] = []
    for class_dir in class_dirs:
        found = sorted(
            path
            for path in class_dir.rglob("*")
            if path.suffix.lower() in IMAGE_EXTENSIONS
            and path.is_file()
            and not any(part.startswith(".") for part in path.relative_to(root).parts)
        )
        if not found:
            logger.warning("class folder %s has no images", class_dir)
        paths.extend(found)
        labels.extend([class_dir.name] * len(found))

    if not paths:
        raise DataNotFoundError(
            f"image folder {str(root)!r} has no images with extensions "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))}; add images to its class folders"
        )
    return [class_dir.name for class_dir in class_dirs], paths, labels


def relative_ref(path: Path, out_dir: Path) -> str:
    """Return ``path`` relative to ``out_dir`` in POSIX form, or absolute if none."""
    try:
        return Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()
    except ValueError:
        # Windows paths on different drives have no relative form.
        return str(path.resolve())


def write_image_arrays(
    out_dir: Path,
    images: np.ndarray,
    ids: list[str],
    labels: list[str],
    class_names: list[str],
) -> ImportResult:
    """Write uint8 grayscale arrays as PNG files and a manifest that references them."""
    images_dir = out_dir / IMAGES_DIR_NAME
    images_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for image, item_id, label in zip(images, ids, labels, strict=True):
        file_name = f"{item_id}.png"
        Image.fromarray(image).save(images_dir / file_name)
        records.append(
            {
                SOURCE_REF_KEY: f"{IMAGES_DIR_NAME}/{file_name}",
                ID_KEY: item_id,
                TRUE_LABEL_KEY: label,
            }
        )
    return write_outputs(out_dir, records, class_names)


def write_outputs(
    out_dir: Path, records: list[dict], class_names: Sequence[str]
) -> ImportResult:
    """Write the manifest and the label category file into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / MANIFEST_NAME
    write_label_category_file(out_dir / LABEL_CATEGORY_FILE_NAME, class_names)
    n_items = write_manifest(manifest, records)
    logger.info(
        "wrote %d items and %d classes to %s", n_items, len(class_names), manifest
    )
    return ImportResult(
        manifest=manifest, class_names=list(class_names), n_items=n_items
    )
