"""Uploads, typed by their content (magic bytes), never by what the client declares.

Photos attached to cases: checked (magic bytes, size, count) and stored content-addressed under
the data folder (``<data_dir>/media/<sha256>``). Only JPEG, PNG and WebP are accepted. The
stored type is the sniffed one; a file whose declared image type and content disagree is
refused, so a script renamed ``.jpg`` never gets stored; a generic declared type
(``application/octet-stream``, none) is no reason to refuse a real image. ``cases.media`` keeps
the references (``{"sha256", "type", "bytes", "name"}``), never the bytes.

Geodata uploads (plan and area imports): ``check_geodata`` checks that the content is what the
file name says (GeoJSON, GeoPackage, zipped Shapefile, bare .shp) before GDAL opens it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gis.errors import GridgovError, InvalidInput, NotFound

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
# Declared types that say nothing about the content: the bytes decide.
GENERIC_TYPES = ("", "application/octet-stream", "binary/octet-stream", "application/unknown")


class MediaTooLarge(GridgovError):
    """An upload is larger than allowed (HTTP 413)."""


class UnsupportedMedia(GridgovError):
    """An upload is not an accepted image type (HTTP 415)."""


class MediaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRIDGOV_MEDIA_", extra="ignore")

    dir: Path | None = Field(default=None, description="default: <data_dir>/media")
    max_bytes: int = Field(default=5 * 1024 * 1024, description="per photo")
    max_files: int = 5


def sniff(data: bytes) -> str | None:
    """The image type the bytes actually are (JPEG, PNG, WebP), or None.

    >>> sniff(b"\\x89PNG\\r\\n\\x1a\\n" + b"\\0" * 8)
    'image/png'
    >>> sniff(b"GIF89a...") is None
    True
    """
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass(frozen=True)
class Upload:
    """One uploaded file as received: its field position, name, declared type and bytes."""

    filename: str
    content_type: str | None
    data: bytes


def check_uploads(uploads: Sequence[Upload], settings: MediaSettings) -> list[dict[str, Any]]:
    """Validate every upload; returns references (not yet stored). Errors name the photo."""
    if len(uploads) > settings.max_files:
        raise InvalidInput(f"at most {settings.max_files} photos per report,"
                           f" got {len(uploads)}", field="photos")
    refs = []
    for i, up in enumerate(uploads):
        label = f"photos[{i}] ({up.filename!r})"
        if len(up.data) > settings.max_bytes:
            raise MediaTooLarge(f"{label} is {len(up.data) / 1e6:.1f} MB; the limit is"
                                f" {settings.max_bytes / 1e6:.1f} MB", field=f"photos[{i}]")
        if len(up.data) == 0:
            raise InvalidInput(f"{label} is empty", field=f"photos[{i}]")
        declared = (up.content_type or "").split(";")[0].strip().lower()
        if declared == "image/jpg":
            declared = "image/jpeg"
        actual = sniff(up.data)
        if declared in GENERIC_TYPES and actual is not None:
            declared = actual
        if declared not in IMAGE_TYPES:
            raise UnsupportedMedia(f"{label} declares type {declared or 'none'!r}; photos must"
                                   " be JPEG, PNG or WebP", field=f"photos[{i}]")
        if actual != declared:
            what = f"a {actual.split('/')[1].upper()} image" if actual else "not an image"
            raise UnsupportedMedia(f"{label} declares {declared} but its content is {what}",
                                   field=f"photos[{i}]")
        refs.append({"sha256": hashlib.sha256(up.data).hexdigest(), "type": actual,
                     "bytes": len(up.data), "name": Path(up.filename or "photo").name[:200]})
    return refs


def media_dir(settings: MediaSettings, data_dir: Path) -> Path:
    return settings.dir or (data_dir / "media")


def store(uploads: Sequence[Upload], refs: Sequence[dict[str, Any]], folder: Path) -> list[Path]:
    """Write the files (atomically, content-addressed). Returns the paths *newly created*, so
    a caller whose transaction fails can remove exactly those (``discard``)."""
    folder.mkdir(parents=True, exist_ok=True)
    created = []
    for up, ref in zip(uploads, refs, strict=True):
        path = folder / ref["sha256"]
        if path.exists():
            continue
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(up.data)
        os.replace(tmp, path)
        created.append(path)
    return created


def discard(paths: Sequence[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def open_media(folder: Path, sha256: str) -> Path:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise InvalidInput("media id must be a SHA-256 hex digest", field="sha256")
    path = folder / sha256
    if not path.is_file():
        raise NotFound(f"no stored media {sha256}", field="sha256")
    return path


# --- geodata ------------------------------------------------------------------------------

GEODATA_SUFFIXES = {".geojson": "geojson", ".json": "geojson", ".gpkg": "gpkg", ".zip": "zip",
                    ".shp": "shp"}
_GEODATA_NAMES = {"geojson": "GeoJSON", "gpkg": "GeoPackage", "zip": "ZIP archive",
                  "shp": "Shapefile (.shp)"}


def sniff_geodata(data: bytes) -> str | None:
    """What geodata the bytes are: ``geojson``, ``gpkg``, ``zip``, ``shp``, or None.

    >>> sniff_geodata(b'\\xef\\xbb\\xbf {"type": "FeatureCollection"}')
    'geojson'
    >>> sniff_geodata(b"SQLite format 3\\0...")
    'gpkg'
    """
    if data.startswith(b"SQLite format 3\0"):
        return "gpkg"
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if data[:4] == b"\x00\x00\x27\x0a" and len(data) >= 100:  # file code 9994, big-endian
        return "shp"
    head = data[:64].removeprefix(b"\xef\xbb\xbf").lstrip()
    if head.startswith(b"{"):
        return "geojson"
    return None


def check_geodata(data: bytes, filename: str, *, field: str = "file") -> str:
    """The kind of a geodata upload, after checking its content matches its file name.

    Raises ``InvalidInput`` for an empty file or an unknown suffix and ``UnsupportedMedia``
    (415) when the content is something else (a program renamed ``.gpkg``).
    """
    name = Path(filename or "upload").name
    expected = GEODATA_SUFFIXES.get(Path(name).suffix.lower())
    if expected is None:
        raise InvalidInput(f"upload a .geojson, .gpkg, a zipped Shapefile (.zip) or .shp, not"
                           f" {name!r}", field=field)
    if not data:
        raise InvalidInput(f"{name!r} is empty", field=field)
    actual = sniff_geodata(data)
    if actual != expected:
        what = f"a {_GEODATA_NAMES[actual]}" if actual else "not geodata gridgov reads"
        raise UnsupportedMedia(f"{name!r} is named as a {_GEODATA_NAMES[expected]} but its"
                               f" content is {what}", field=field)
    return actual
