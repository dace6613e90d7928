"""Tests of reading and writing JSON Lines input manifests."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest

from labelloop.errors import ItemError, LabelloopError, ManifestError
from labelloop.manifest import ManifestItem, read_manifest, write_manifest


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _errors_by_line(errors: list[ItemError]) -> dict[int, ItemError]:
    return {error.line: error for error in errors}


@pytest.fixture
def mixed_manifest(tmp_path: Path) -> Path:
    """Return a manifest mixing valid lines with one of each invalid kind."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "cat.png").write_bytes(b"not decoded here")
    spaced = tmp_path / "with space é.png"
    spaced.write_bytes(b"x")
    absolute = tmp_path / "absolute.png"
    absolute.write_bytes(b"x")
    file_uri = "file://" + quote(str(spaced))

    lines = [
        json.dumps({"source": "a good text", "id": "t1", "extra": {"k": [1, 2]}}),
        '{"source": "broken json"',
        json.dumps({"id": "no source"}),
        json.dumps({"source": "text", "source-ref": "images/cat.png"}),
        json.dumps({"source-ref": "images/missing.png"}),
        json.dumps({"source": "   \t "}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"source-ref": "s3://bucket/key.png"}),
        json.dumps({"source-ref": file_uri, "id": "uri"}),
        "",
        "   ",
        json.dumps({"source-ref": "images/cat.png", "true-label": "cat"}),
        json.dumps({"source-ref": str(absolute)}),
        json.dumps({"source": "ünïcödé text ✓"}, ensure_ascii=False),
        json.dumps({"source": 42}),
        json.dumps({"source-ref": "https://example.com/a.png"}),
        json.dumps({"source-ref": "images"}),
    ]
    return _write_lines(tmp_path / "input.manifest", lines)


def test_read_manifest_valid_lines_kept(mixed_manifest: Path) -> None:
    items, _ = read_manifest(mixed_manifest)
    base = mixed_manifest.parent.resolve()

    assert [item.line for item in items] == [1, 9, 12, 13, 14]
    assert all(isinstance(item, ManifestItem) for item in items)

    text_item = items[0]
    assert text_item.source == "a good text"
    assert text_item.source_ref is None
    assert text_item.record == {
        "source": "a good text",
        "id": "t1",
        "extra": {"k": [1, 2]},
    }

    uri_item = items[1]
    assert uri_item.source is None
    assert uri_item.source_ref == base / "with space é.png"
    assert uri_item.record["id"] == "uri"

    relative_item = items[2]
    assert relative_item.source_ref == base / "images" / "cat.png"
    assert relative_item.record["true-label"] == "cat"

    assert items[3].source_ref == base / "absolute.png"
    assert items[4].source == "ünïcödé text ✓"


def test_read_manifest_invalid_lines_reported(mixed_manifest: Path) -> None:
    _, errors = read_manifest(mixed_manifest)
    by_line = _errors_by_line(errors)

    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8, 15, 16, 17]
    assert all(isinstance(error, LabelloopError) for error in errors)
    assert "invalid JSON" in by_line[2].reason
    assert "neither" in by_line[3].reason
    assert "'id'" in by_line[3].reason
    assert "both" in by_line[4].reason
    assert "missing.png" in by_line[5].reason
    assert "not found" in by_line[5].reason
    assert "empty" in by_line[6].reason
    assert "not an object" in by_line[7].reason
    assert "list" in by_line[7].reason
    assert "only local files are supported" in by_line[8].reason
    assert "s3" in by_line[8].reason
    assert "must be a string" in by_line[15].reason
    assert "only local files are supported" in by_line[16].reason
    assert "is not a file" in by_line[17].reason


def test_item_error_message_names_line(mixed_manifest: Path) -> None:
    _, errors = read_manifest(mixed_manifest)
    first = errors[0]

    assert first.line == 2
    assert str(first).startswith("manifest line 2: ")


def test_read_manifest_missing_file_raises(tmp_path: Path) -> None:
    missing = tmp_path / "absent.manifest"

    with pytest.raises(ManifestError, match="absent.manifest"):
        read_manifest(missing)


def test_read_manifest_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not a file"):
        read_manifest(tmp_path)


def test_read_manifest_blank_only_raises(tmp_path: Path) -> None:
    manifest = _write_lines(tmp_path / "blank.manifest", ["", "  ", ""])

    with pytest.raises(ManifestError, match="empty"):
        read_manifest(manifest)


def test_read_manifest_all_invalid_raises(tmp_path: Path) -> None:
    manifest = _write_lines(tmp_path / "bad.manifest", ["{", '{"x": 1}'])

    with pytest.raises(ManifestError, match="no valid line") as caught:
        read_manifest(manifest)
    assert "manifest line 1" in str(caught.value)
    assert "manifest line 2" in str(caught.value)


def test_read_manifest_bom_and_crlf(tmp_path: Path) -> None:
    manifest = tmp_path / "windows.manifest"
    content = '{"source": "first"}\r\n\r\n{"source": "second"}\r\n'
    manifest.write_bytes(b"\xef\xbb\xbf" + content.encode("utf-8"))

    items, errors = read_manifest(manifest)

    assert errors == []
    assert [item.line for item in items] == [1, 3]
    assert [item.source for item in items] == ["first", "second"]


def test_read_manifest_invalid_utf8_line(tmp_path: Path) -> None:
    manifest = tmp_path / "latin1.manifest"
    manifest.write_bytes(b'{"source": "ok"}\n{"source": "caf\xe9"}\n')

    items, errors = read_manifest(manifest)

    assert [item.line for item in items] == [1]
    assert [error.line for error in errors] == [2]
    assert "UTF-8" in errors[0].reason


def test_read_manifest_file_uri_remote_host(tmp_path: Path) -> None:
    manifest = _write_lines(
        tmp_path / "host.manifest",
        [
            json.dumps({"source": "ok"}),
            json.dumps({"source-ref": "file://server/share/a.png"}),
        ],
    )

    _, errors = read_manifest(manifest)

    assert [error.line for error in errors] == [2]
    assert "server" in errors[0].reason


def test_read_manifest_relative_to_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "nested" / "dir"
    folder.mkdir(parents=True)
    (tmp_path / "nested" / "image.jpg").write_bytes(b"x")
    manifest = _write_lines(
        folder / "m.manifest", [json.dumps({"source-ref": "../image.jpg"})]
    )

    items, errors = read_manifest(manifest)

    assert errors == []
    assert items[0].source_ref == (tmp_path / "nested" / "image.jpg").resolve()


def test_write_manifest_round_trip(tmp_path: Path) -> None:
    records = [
        {"source": "naïve café ✓", "id": "1", "meta": {"n": 1}},
        {"source": "line\nbreak", "true-label": "x"},
    ]
    path = tmp_path / "out" / "written.manifest"

    n_written = write_manifest(path, records)

    assert n_written == 2
    raw = path.read_text(encoding="utf-8")
    assert "naïve café ✓" in raw
    assert raw.count("\n") == 2
    items, errors = read_manifest(path)
    assert errors == []
    assert [item.record for item in items] == records
