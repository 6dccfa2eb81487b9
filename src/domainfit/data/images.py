"""Find labelled images on disk in one of three layouts, and check that every one of them can be decoded.

    domainfit train src/domainfit/configs/neu_defects.yaml

    examples = read_image_examples("photos/", layout="folders")                  # photos/<class>/*.jpg
    examples = read_image_examples("labels.csv", layout="csv")                   # path,label rows
    examples = read_image_examples("NEU/", layout="filename", filename_pattern=r"^(.+)_\\d+\\.\\w+$")

Each image becomes an :class:`ImageExample`: an :class:`~domainfit.data.records.Example` whose ``text`` is the
SHA-256 of the file's bytes, so :mod:`domainfit.data.splits` removes byte-identical copies before the
stratified, seeded split exactly as it removes repeated sentences (a copy of a training photo in the test set
would inflate the score). Every file is opened and fully decoded here, before any model is loaded, so a
corrupt, truncated or non-image file stops the run at once with its name.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from domainfit.data.readers import read_examples
from domainfit.data.records import Example
from domainfit.errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
LAYOUTS = ("folders", "csv", "filename")


@dataclass(frozen=True)
class ImageExample(Example):
    """One image file and its label. ``text`` is the SHA-256 of the file's bytes (the dedup key).

    Attributes:
        path: the image file, absolute.
        width: its width in pixels.
        height: its height in pixels.
    """

    path: str = field(default="", compare=False)
    width: int = field(default=0, compare=False)
    height: int = field(default=0, compare=False)


def resolve_layout(source: str | Path, layout: str, filename_pattern: str | None) -> str:
    """Turn ``layout="auto"`` into a concrete layout.

    csv for a .csv file, filename if a pattern is set, else folders.
    """
    if layout != "auto":
        return layout
    if Path(source).suffix.lower() == ".csv":
        return "csv"
    return "filename" if filename_pattern else "folders"


def read_image_examples(
    source: str | Path,
    *,
    layout: str = "auto",
    filename_pattern: str | None = None,
    path_column: str = "path",
    label_column: str | int = "label",
) -> list[ImageExample]:
    """Find every labelled image of ``source`` and check it decodes.

    Args:
        source: a folder (layouts folders and filename) or a CSV file (layout csv).
        layout: "folders" (``source/<class>/**/<image>``), "csv" (rows of path and label, paths relative to
            the CSV), "filename" (every image under ``source``, recursively, labelled by ``filename_pattern``),
            or "auto" (see :func:`resolve_layout`).
        filename_pattern: regex searched in each file name; group ``label`` (or group 1) is the class.
        path_column: CSV column of the image paths.
        label_column: CSV column of the labels.

    Returns:
        The examples sorted by path (folder layouts) or in file order (CSV), so the split is reproducible.

    Raises:
        DataError: a missing source or file, an unreadable image, a pattern that matches no file name, a
            folder without class sub-folders or images.
    """
    source = Path(source).expanduser()
    layout = resolve_layout(source, layout, filename_pattern)
    if layout not in LAYOUTS:
        raise DataError(
            f"unknown image layout {layout!r}", key="image.layout", fix=f"use one of: {', '.join(LAYOUTS)}."
        )
    if not source.exists():
        raise DataError(
            "does not exist",
            path=source,
            key="data.train",
            fix="give an image folder (one sub-folder per class, or set image.filename_pattern) or a CSV of "
            "path,label.",
        )
    if layout == "csv":
        found = _from_csv(source, path_column, label_column)
    else:
        if not source.is_dir():
            raise DataError(
                f"layout {layout!r} needs a folder, found a file",
                path=source,
                key="data.train",
                fix="give the folder holding the images, or set image.layout: csv for a CSV of path,label.",
            )
        found = _from_folders(source) if layout == "folders" else _from_filenames(source, filename_pattern or "")
    return [_checked(path, label, line, unit) for path, label, line, unit in found]


def _from_folders(root: Path) -> list[tuple[Path, str, int, str]]:
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = _images_in(root, recursive=False)
    if not classes:
        example = f" (it holds {len(loose)} images directly, e.g. {loose[0].name})" if loose else ""
        raise DataError(
            f"expected one sub-folder per class, found no sub-folders{example}",
            path=root,
            key="data.train",
            fix="put each class's images in root/<class name>/, or set image.filename_pattern if the class is "
            "in the file names, or give a CSV of path,label.",
        )
    found = []
    for folder in classes:
        images = _images_in(folder, recursive=True)
        found += [(path, folder.name, i + 1, "image") for i, path in enumerate(images)]
    if not found:
        raise DataError(
            f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in the class folders "
            f"{', '.join(p.name for p in classes[:6])}",
            path=root,
            key="data.train",
            fix="check the folder; image files are recognised by their extension.",
        )
    empty = [p.name for p in classes if not any(f[1] == p.name for f in found)]
    if empty:
        raise DataError(
            f"class folder(s) without images: {', '.join(empty[:6])}",
            path=root,
            fix="remove the empty folders or add images to them.",
        )
    return found


def _from_filenames(root: Path, pattern: str) -> list[tuple[Path, str, int, str]]:
    regex = re.compile(pattern)
    group: str | int = "label" if "label" in regex.groupindex else 1 if regex.groups else 0
    images = _images_in(root, recursive=True)
    if not images:
        raise DataError(
            f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) under this folder",
            path=root,
            key="data.train",
            fix="check the folder; image files are recognised by their extension.",
        )
    found, unmatched = [], []
    for path in images:
        match = regex.search(path.name)
        if match is None or not match.group(group):
            unmatched.append(path)
        else:
            found.append((path, match.group(group), len(found) + 1, "image"))
    if not found:
        names = ", ".join(p.name for p in images[:3])
        raise DataError(
            f"image.filename_pattern {pattern!r} matches none of the {len(images)} file names (e.g. {names})",
            path=root,
            key="image.filename_pattern",
            fix="write a regex whose first group (or group 'label') captures the class, e.g. "
            "'^(.+)_\\d+\\.\\w+$' for rolled-in_scale_12.jpg; test it with Python's re.search.",
        )
    if unmatched:
        raise DataError(
            f"file name {unmatched[0].name!r} does not match image.filename_pattern {pattern!r} "
            f"({len(unmatched)} of {len(images)} files do not)",
            path=unmatched[0],
            key="image.filename_pattern",
            fix="widen the pattern, or move files that are not training images out of the folder.",
        )
    return found


def _from_csv(path: Path, path_column: str, label_column: str | int) -> list[tuple[Path, str, int, str]]:
    rows = read_examples(path, format="csv", text_column=path_column, label_column=label_column)
    found = []
    for row in rows:
        image = Path(row.text).expanduser()
        image = image if image.is_absolute() else path.parent / image
        if not image.is_file():
            raise DataError(
                f"image file {row.text!r} does not exist (looked for {image})",
                path=path,
                line=row.line,
                column=path_column,
                fix="paths are relative to the CSV's folder; correct the path or remove the row.",
            )
        found.append((image, row.label, row.line, "line"))
    return found


def _images_in(folder: Path, *, recursive: bool) -> list[Path]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p
        for p in files
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _checked(path: Path, label: str, line: int, unit: str) -> ImageExample:
    """Read, hash and fully decode one file (``Image.verify`` alone misses truncated JPEGs)."""
    from PIL import Image, UnidentifiedImageError

    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(
            f"cannot read the file: {e.strerror or e}", path=path, fix="check it exists and is readable."
        ) from e
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            width, height = image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(
            f"not a readable image ({e})",
            path=path,
            fix="replace the file with an intact copy, or delete it from the data.",
        ) from e
    digest = hashlib.sha256(data).hexdigest()
    return ImageExample(
        text=digest, label=label, line=line, unit=unit, path=str(path.resolve()), width=width, height=height
    )


def open_rgb(path: str | Path):
    """Open an image as RGB (greyscale, palette and alpha images are converted); DataError naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError as e:
        raise DataError("image file does not exist", path=path, fix="check the path.") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(
            f"not a readable image ({e})", path=path, fix="replace the file with an intact copy, or leave it out."
        ) from e
