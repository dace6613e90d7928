"""Read and write Ground Truth input manifests in JSON Lines format.

Each non-blank line of a manifest is one JSON object with exactly one of two keys:
``source`` contains the item's text inline, ``source-ref`` names a local file (a path
relative to the manifest's folder, an absolute path or a ``file://`` URI). Every other
key of a line is kept and carried to the output unchanged.
"""

from __future__ import annotations

import json
import logging
import reprlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from labelloop.errors import ItemError, ManifestError

logger = logging.getLogger(__name__)

#: Key of the inline text of an item.
SOURCE_KEY = "source"
#: Key of the local file that contains an item.
SOURCE_REF_KEY = "source-ref"

# Number of line errors quoted when a manifest has no valid line at all.
_QUOTED_ERRORS = 5

#: Deepest nesting of arrays and objects accepted in a line. A value nested near
#: Python's recursion limit (1,000 frames by default) passes ``json.loads`` but
#: fails in the JSON encoder when the record is stored, so the limit keeps a margin.
MAX_NESTING = 100

_TOO_DEEP = (
    f"JSON arrays or objects nested more than {MAX_NESTING} levels deep; flatten "
    "the line's values"
)


@dataclass(frozen=True)
class ManifestItem:
    """One valid line of an input manifest.

    Attributes
    ----------
    line : int
        One-based line number in the manifest.
    record : dict
        The JSON object of the line as read, with all its keys.
    source : str or None
        Inline text (key ``source``), or None for a file item.
    source_ref : Path or None
        Resolved absolute path of the item's file (key ``source-ref``), or None for
        a text item.
    """

    line: int
    record: dict
    source: str | None
    source_ref: Path | None


def read_manifest(path: Path) -> tuple[list[ManifestItem], list[ItemError]]:
    """Read a JSON Lines input manifest and check each of its lines.

    Blank lines are skipped. A line that cannot be labeled becomes an `ItemError`
    with its line number, and reading goes on. Files named by ``source-ref`` must
    exist, but they are not decoded here.

    Parameters
    ----------
    path : Path
        Manifest file. Relative ``source-ref`` paths are resolved against its folder.

    Returns
    -------
    items : list of ManifestItem
        Valid lines, in file order.
    errors : list of ItemError
        One error per invalid line, in file order.

    Raises
    ------
    ManifestError
        If the manifest file is missing or unreadable, has no non-blank line, or
        has no valid line.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(
            f"input manifest {str(path)!r} not found or not a file; pass the path "
            "of a JSON Lines file with one object per line"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(
            f"cannot read input manifest {str(path)!r}: {exc}; check its permissions"
        ) from exc

    base_dir = path.resolve().parent
    items: list[ManifestItem] = []
    errors: list[ItemError] = []
    n_lines = 0
    for number, raw_line in enumerate(raw.splitlines(), start=1):
        if number == 1 and raw_line.startswith(b"\xef\xbb\xbf"):
            raw_line = raw_line[3:]
        if not raw_line.strip():
            continue
        n_lines += 1
        try:
            items.append(_parse_line(number, raw_line, base_dir))
        except ItemError as error:
            errors.append(error)

    if n_lines == 0:
        raise ManifestError(
            f"input manifest {str(path)!r} is empty; add one JSON object per line "
            'such as {"source": "some text"} or {"source-ref": "image.png"}'
        )
    if not items:
        quoted = "; ".join(str(error) for error in errors[:_QUOTED_ERRORS])
        raise ManifestError(
            f"input manifest {str(path)!r} has no valid line ({len(errors)} invalid): "
            f"{quoted}"
        )
    if errors:
        logger.warning(
            "input manifest %s: %d valid lines, %d invalid lines",
            path,
            len(items),
            len(errors),
        )
    return items, errors


def write_manifest(path: Path, records: Iterable[dict]) -> int:
    """Write records as a JSON Lines manifest in UTF-8.

    Parameters
    ----------
    path : Path
        Output file. Its folder is created if needed, and an existing file is
        replaced.
    records : iterable of dict
        JSON-serializable objects, one per line. Non-ASCII text is written as is.

    Returns
    -------
    int
        Number of lines written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_written = 0
    with path.open("w", encoding="utf-8", newline="\n") as stream:
        for record in records:
            stream.write(json.dumps(record, ensure_ascii=False))
            stream.write("\n")
            n_written += 1
    return n_written


def _parse_line(number: int, raw_line: bytes, base_dir: Path) -> ManifestItem:
    try:
        text = raw_line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ItemError(
            number,
            f"line is not valid UTF-8 ({exc.reason}); save the manifest as UTF-8",
        ) from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ItemError(
            number,
            f"invalid JSON ({exc.msg} at column {exc.colno}); write each line as one "
            "complete JSON object",
        ) from None
    except RecursionError:
        raise ItemError(number, _TOO_DEEP) from None
    except ValueError:
        # json raises a plain ValueError for an integer longer than Python converts.
        raise ItemError(
            number,
            f"a JSON integer has more than {sys.get_int_max_str_digits()} digits, "
            "too many to read; write it as a string",
        ) from None
    if _nesting(record) > MAX_NESTING:
        raise ItemError(number, _TOO_DEEP)
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ItemError(
            number,
            f"line contains a lone UTF-16 surrogate escape "
            f"({exc.object[exc.start : exc.end]!r}), which is not a character and "
            "cannot be stored or written as UTF-8; fix the \\u escape in the line",
        ) from None
    if not isinstance(record, dict):
        raise ItemError(
            number,
            f"line is a JSON {type(record).__name__}, not an object; write each line "
            'as an object such as {"source": "some text"}',
        )

    has_source = SOURCE_KEY in record
    has_ref = SOURCE_REF_KEY in record
    if has_source and has_ref:
        raise ItemError(
            number,
            f'line has both "{SOURCE_KEY}" and "{SOURCE_REF_KEY}"; keep "{SOURCE_KEY}" '
            f'for inline text or "{SOURCE_REF_KEY}" for a file, not both',
        )
    if not has_source and not has_ref:
        keys = ", ".join(repr(key) for key in record) or "none"
        raise ItemError(
            number,
            f'line has neither "{SOURCE_KEY}" nor "{SOURCE_REF_KEY}" (keys: {keys}); '
            f'add "{SOURCE_KEY}" with the text or "{SOURCE_REF_KEY}" with a file path',
        )

    if has_source:
        return ManifestItem(
            line=number,
            record=record,
            source=_check_source(number, record[SOURCE_KEY]),
            source_ref=None,
        )
    return ManifestItem(
        line=number,
        record=record,
        source=None,
        source_ref=_resolve_source_ref(number, record[SOURCE_REF_KEY], base_dir),
    )


def _nesting(value: object) -> int:
    """Return how deeply arrays and objects nest in a parsed JSON value."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict):
            children = list(current.values())
        elif isinstance(current, list):
            children = current
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _check_source(number: int, value: object) -> str:
    if not isinstance(value, str):
        raise ItemError(
            number,
            f'"{SOURCE_KEY}" must be a string, got {type(value).__name__} {value!r}; '
            "write the text as a JSON string",
        )
    if not value.strip():
        raise ItemError(
            number,
            f'"{SOURCE_KEY}" is empty or only whitespace ({value!r}); give the text to '
            "label or remove the line",
        )
    return value


def _resolve_source_ref(number: int, value: object, base_dir: Path) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ItemError(
            number,
            f'"{SOURCE_REF_KEY}" must be a non-empty string, got {value!r}; give a '
            "file path or a file:// URI",
        )

    parts = urlsplit(value)
    # A one-letter scheme is a Windows drive letter ("C:\\images\\a.png"), not a URI.
    if parts.scheme and len(parts.scheme) > 1:
        if parts.scheme.lower() != "file":
            raise ItemError(
                number,
                f'"{SOURCE_REF_KEY}" {value!r} uses the {parts.scheme}:// scheme, but '
                "only local files are supported; copy the file to local disk and give "
                "its path or a file:// URI",
            )
        if parts.netloc not in ("", "localhost"):
            raise ItemError(
                number,
                f'"{SOURCE_REF_KEY}" {value!r} names the host {parts.netloc!r}, but '
                "only local files are supported; use file:///absolute/path",
            )
        # url2pathname percent-decodes the path.
        ref = Path(url2pathname(parts.path))
    else:
        ref = Path(value)

    if not ref.is_absolute():
        ref = base_dir / ref
    try:
        ref = ref.resolve()
        is_file = ref.is_file()
        exists = is_file or ref.exists()
    except (OSError, RuntimeError, ValueError) as exc:
        # RuntimeError: a symlink loop; OSError: a name too long; ValueError: a
        # null byte in the path.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ItemError(
            number,
            f'"{SOURCE_REF_KEY}" {reprlib.repr(value)} cannot be used as a path '
            f"({reason}); give the path of an existing file",
        ) from None
    if not is_file:
        state = "is not a file" if exists else "not found"
        raise ItemError(
            number,
            f'"{SOURCE_REF_KEY}" file {str(ref)!r} {state}; relative paths are read '
            f"from the manifest's folder {str(base_dir)!r}, so fix the path or add "
            "the file",
        )
    return ref
