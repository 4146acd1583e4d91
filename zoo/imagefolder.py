"""A folder of class subfolders of images as a data source (read with Pillow, TF-free).

Read the way Keras' ``image_dataset_from_directory`` reads a folder: the class names are
the sorted subfolder names and a label is the index of its name; every ``.png``, ``.jpg``,
``.jpeg``, ``.bmp`` and ``.gif`` below a class folder is an image of it (a GIF's first
frame); each image is resized bilinearly (no antialiasing, half-pixel centres, aspect ratio
not kept) to the model's height and width and given its channels (1: grayscale by
ITU-R 601 luma, 3: RGB, 4: RGBA), as float32 values 0-255 times ``image_scale`` when given
(Keras models usually carry their own Rescaling layer). Hidden folders are left out.

``root/train``, ``root/val``, ``root/test`` (each with the class subfolders) give the
splits; without them the split is seeded and stratified (see ``zoo/userdata.py``).
Unreadable images are skipped and listed in ``DatasetSplits.skipped`` as ``"PATH: why"``.

Example:
    >>> resize_bilinear(np.array([[0.0, 4.0]]), 1, 4)[0].tolist()
    [0.0, 1.0, 3.0, 4.0]
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.core.errors import DataError, EdgesmithError
from edgesmith.zoo.arraysplits import build_splits, note_changed
from edgesmith.zoo.datasets import DatasetSplits

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
COLOR_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}
_PIL_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}
CHANNELS = {mode: channels for channels, mode in COLOR_MODES.items()}
FOLDER_EXPECTED = "a folder of class subfolders of images (.png, .jpg, .jpeg, .bmp, .gif)"
FOLDER_FIX = "put each class's images in a subfolder named after the class"


def is_image_folder(path: Path) -> bool:
    """Any existing folder: whether it holds classes of images is checked when read."""
    return path.is_dir()


def read_image_folder(root: Path, settings: dict[str, Any]) -> DatasetSplits:
    """DatasetSplits of the images below ``root`` (the reader registered as ``images``)."""
    _pillow()
    height, width, mode = _image_settings(root, settings)
    layout = _split_folders(root)
    names = settings.get("class_names") or _class_folders(layout["train"])
    if not names:
        raise DataError(
            f"{layout['train']}: no class subfolders", expected=FOLDER_EXPECTED, fix=FOLDER_FIX
        )
    files: dict[str, list[tuple[Path, int]]] = {
        split: _list_images(folder, names) for split, folder in layout.items()
    }
    scale = settings.get("image_scale")
    arrays, skipped, readable = {}, [], 0
    unreadable: dict[Path, str] = {}
    for split, listing in files.items():
        images = np.zeros((len(listing), height, width, CHANNELS[mode]), np.float32)
        keep = np.zeros(len(listing), bool)
        for row, (file, _label) in enumerate(listing):
            try:
                images[row] = read_image(file, height, width, mode)
                keep[row] = True
            except _ImageUnreadable as exc:
                skipped.append(f"{file}: {exc}")
                unreadable[file] = str(exc)
        readable += int(keep.sum())
        if scale is not None:
            images *= np.float32(scale)
        labels = np.asarray([label for _, label in listing], np.int64)
        arrays[split] = (images[keep], labels[keep])
    if not readable:
        total = sum(len(v) for v in files.values())
        raise DataError(
            f"{root}: no readable image ({len(skipped)} of {total} files skipped; first: "
            f"{skipped[0] if skipped else 'none'})",
            expected=FOLDER_EXPECTED,
            fix="replace the broken files",
        )
    _check_every_class_readable(files, unreadable, names, layout)
    if len(settings["input_shape"]) == 2:  # a (height, width) model: no channel axis
        arrays = {s: (x[..., 0], y) for s, (x, y) in arrays.items()}
    settings = {
        **settings,
        "path": str(root),
        "image_size": [height, width],
        "color_mode": mode,
        "image_scale": scale,
        "layout": "classes" if layout["train"] == root else "train/val/test",
    }
    settings.pop("stratified", None)
    keys = {s: (f"{s} images", f"{s} labels") for s in ("train", "val", "test")}
    data = build_splits(str(root), arrays, settings, names, source="", fix=FOLDER_FIX, keys=keys)
    note_changed(data, settings, folder_hash(root, [f for v in files.values() for f, _ in v]))
    data.source = f"{root}: {readable} images of {len(names)} classes, {height}x{width} {mode}" + (
        f", {len(skipped)} skipped" if skipped else ""
    )
    if skipped:
        message = f"skipped {len(skipped)} unreadable image(s) in {root}: {skipped[0]}"
        data.notes.append(message)
        data.skipped.extend(skipped)
    return data


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise EdgesmithError(
            f"Pillow is not installed ({exc})",
            expected="Pillow to read image folders",
            fix="install it with: pip install pillow",
        ) from None
    return Image


def _check_every_class_readable(
    files: dict[str, list[tuple[Path, int]]],
    unreadable: dict[Path, str],
    names: list[str],
    layout: dict[str, Path],
) -> None:
    """A class whose every image is unreadable would silently vanish: name its folder."""
    for split, listing in files.items():
        for label, name in enumerate(names):
            paths = [f for f, lab in listing if lab == label]
            if paths and all(f in unreadable for f in paths):
                raise DataError(
                    f"{layout[split] / name}: none of its {len(paths)} image(s) can be read "
                    f"(first: {paths[0]}: {unreadable[paths[0]]})",
                    expected=FOLDER_EXPECTED,
                    fix="replace the broken files or remove the class folder",
                )


class _ImageUnreadable(Exception):
    """An image file that cannot be decoded (counted as a skip, not an error)."""


def read_image(path: Path, height: int, width: int, mode: str) -> np.ndarray:
    """One image as float32 (height, width, channels), values 0-255, resized bilinearly."""
    pillow = _pillow()
    try:
        with pillow.open(path) as image:
            image.load()
            pixels = _pixels(image, mode)
    except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError, EOFError...
        raise _ImageUnreadable(f"cannot read the image ({type(exc).__name__}: {exc})") from exc
    return resize_bilinear(pixels, height, width)


def _pixels(image: Any, mode: str) -> np.ndarray:
    """``image`` in ``mode`` as float32 (h, w, channels), 0-255."""
    if image.mode.startswith("I;16") or image.mode == "I":
        # 16-bit grayscale: scaled to 8-bit range as TensorFlow's decoders do.
        gray = np.asarray(image, dtype=np.float32) * np.float32(255 / 65535)
        gray = np.clip(gray, 0, 255)[..., np.newaxis]
        channels = CHANNELS[mode]
        if channels == 1:
            return gray
        planes = [gray] * 3 + ([np.full_like(gray, 255.0)] if channels == 4 else [])
        return np.concatenate(planes, axis=-1)
    pixels = np.asarray(image.convert(_PIL_MODES[mode]), dtype=np.float32)
    return pixels[..., np.newaxis] if pixels.ndim == 2 else pixels


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of (h, w[, c]) with half-pixel centres and no antialiasing.

    The same sampling as ``tf.image.resize(..., "bilinear")``, which Keras' image loaders use.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.shape[:2] == (height, width):
        return image
    y_lo, y_hi, y_frac = _sample_points(image.shape[0], height)
    x_lo, x_hi, x_frac = _sample_points(image.shape[1], width)
    x_frac = x_frac.reshape((1, -1) + (1,) * (image.ndim - 2))
    y_frac = y_frac.reshape((-1, 1) + (1,) * (image.ndim - 2))
    top, bottom = image[y_lo], image[y_hi]
    top = top[:, x_lo] + (top[:, x_hi] - top[:, x_lo]) * x_frac
    bottom = bottom[:, x_lo] + (bottom[:, x_hi] - bottom[:, x_lo]) * x_frac
    return (top + (bottom - top) * y_frac).astype(np.float32)


def _sample_points(size: int, out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scale = np.float32(size / out)
    centre = (np.arange(out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    low = np.floor(centre)
    lower = np.clip(low, 0, size - 1).astype(np.int64)
    upper = np.clip(np.ceil(centre), 0, size - 1).astype(np.int64)
    return lower, upper, (centre - low).astype(np.float32)


def folder_hash(root: Path, files: list[Path]) -> str:
    """A hash over the images' relative paths, sizes and modification times."""
    digest = hashlib.sha256()
    for file in sorted(files):
        stat = file.stat()
        digest.update(
            f"{file.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
        )
    return digest.hexdigest()


def _image_settings(root: Path, settings: dict[str, Any]) -> tuple[int, int, str]:
    """Height, width and colour mode: stored ones, else from the model's input shape."""
    shape = settings.get("input_shape")
    if settings.get("image_size") and settings.get("color_mode"):
        height, width = (int(v) for v in settings["image_size"])
        mode = settings["color_mode"]
        if shape is None:
            shape = [height, width, CHANNELS[mode]]
    else:
        usable = shape is not None and len(shape) in (2, 3) and None not in shape[:2]
        channels = 1 if usable and len(shape) == 2 else (shape[2] if usable else None)
        if not usable or channels not in COLOR_MODES:
            raise DataError(
                f"{root}: images need the model's input shape to be sized "
                f"(given {None if shape is None else tuple(shape)})",
                expected="an image model input (height, width, channels) with 1, 3 or 4 channels",
                fix="pass input_shape=model.input_shape[1:] (or the model) with the folder",
            )
        height, width, mode = int(shape[0]), int(shape[1]), COLOR_MODES[channels]
    if mode not in _PIL_MODES:
        raise DataError(f"{root}: color mode {mode!r}", expected="grayscale, rgb or rgba")
    settings["input_shape"] = list(shape)
    return height, width, mode


def _subfolders(folder: Path) -> list[str]:
    try:
        return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError as exc:
        raise DataError(f"{folder}: cannot list the folder ({exc.strerror or exc})") from None


def _split_folders(root: Path) -> dict[str, Path]:
    """``{"train": root}``, or the train / val / test folders when root holds only those."""
    names = set(_subfolders(root))
    if "train" in names and names <= {"train", "val", "test"} and _subfolders(root / "train"):
        return {s: root / s for s in ("train", "val", "test") if s in names}
    return {"train": root}


def _class_folders(folder: Path) -> list[str]:
    return _subfolders(folder)


def _list_images(folder: Path, class_names: list[str]) -> list[tuple[Path, int]]:
    """(file, label) of every image below each class folder, in a fixed order."""
    present = _subfolders(folder)
    unknown = sorted(set(present) - set(class_names))
    if unknown:
        raise DataError(
            f"{folder}: class folder(s) {', '.join(unknown)} are not among the classes "
            f"{', '.join(class_names)}",
            expected="the same class subfolders in train, val and test (and as the model)",
            fix="rename or remove those folders",
        )
    listing: list[tuple[Path, int]] = []
    for label, name in enumerate(class_names):
        if name not in present:
            continue
        found = []
        for dirpath, dirnames, filenames in os.walk(folder / name):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found += [
                Path(dirpath) / f for f in sorted(filenames) if f.lower().endswith(IMAGE_EXTENSIONS)
            ]
        if not found:
            raise DataError(
                f"{folder / name}: empty class folder (no .png, .jpg, .jpeg, .bmp or .gif files)",
                expected=FOLDER_EXPECTED,
                fix="add images of the class or remove the folder",
            )
        listing += [(f, label) for f in found]
    return listing
