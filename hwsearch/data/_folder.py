"""A class-per-folder image dataset on Pillow, like torchvision's ``ImageFolder``.

Layout::

    ROOT/<class>/<image>.jpg        (images may also sit deeper: ROOT/<class>/<sub>/<image>.png)

Classes are the sorted subfolder names of ``ROOT`` and label ``i`` is the ``i``-th of them; the files
of a class are sorted by path. ImageNet's flat validation folder (all 50,000 images in one folder, labels
in a separate file) must first be sorted into class subfolders.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from hwsearch.data._transforms import to_tensor_transform
from hwsearch.errors import DataError

__all__ = ["IMG_EXTENSIONS", "ImageFolderDataset"]

IMG_EXTENSIONS: Final = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
LAYOUT_HINT: Final = "expected ROOT/<class>/<image>.jpg"


class ImageFolderDataset(Dataset[tuple[Tensor, int]]):
    """Images in ``ROOT/<class>/`` folders, returned as ``(transform(image), label)``.

    The folder is scanned once at construction; an unusable layout raises
    :class:`~hwsearch.errors.DataError` there, before any evaluation starts. Files are only decoded when
    an item is read, so a corrupt image raises when it is loaded; call :meth:`verify` to decode every
    file up front. Files and folders whose names start with ``.`` (``.DS_Store``, ``.ipynb_checkpoints``)
    are skipped; any other file needs an image extension (:data:`IMG_EXTENSIONS`, any case).

    Args:
        root: the folder holding one subfolder per class.
        transform: called on each ``PIL.Image``; it must convert the mode itself (the eval transforms
            do). ``None`` gives an RGB float tensor ``[3, H, W]`` in ``[0, 1]``.

    Attributes:
        classes: sorted class folder names; ``classes[label]`` names a label.
        class_to_idx: class name -> label.
        samples: ``(path, label)`` for every image, in item order.

    Raises:
        DataError: ``root`` is missing or not a folder, has no class subfolders, a class folder holds no
            images, or a file is not an image.
    """

    def __init__(
        self, root: str | os.PathLike[str], transform: Callable[[Image.Image], Tensor] | None = None
    ) -> None:
        self.root = Path(root)
        self.transform = transform if transform is not None else to_tensor_transform()
        self.classes = _class_folders(self.root)
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.samples = [
            (path, label) for label, name in enumerate(self.classes) for path in _images(self.root / name)
        ]

    @property
    def targets(self) -> list[int]:
        """The label of every item, in item order."""
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        return self.transform(_load(path)), label

    def verify(self) -> int:
        """Decode every image once; raise :class:`~hwsearch.errors.DataError` on the first bad one.

        Returns:
            The number of images checked.
        """
        for path, _ in self.samples:
            _load(path).close()
        return len(self.samples)

    def __repr__(self) -> str:
        return f"ImageFolderDataset(root={str(self.root)!r}, classes={len(self.classes)}, images={len(self)})"


def _class_folders(root: Path) -> list[str]:
    if not root.exists():
        raise DataError(f"image folder {root} does not exist; check the path ({LAYOUT_HINT})")
    if not root.is_dir():
        raise DataError(f"image folder {root} is a file, not a folder; pass its parent folder ({LAYOUT_HINT})")
    entries = [e for e in os.scandir(root) if not e.name.startswith(".")]
    classes = sorted(e.name for e in entries if e.is_dir())
    if not classes:
        loose = sorted(e.name for e in entries if e.is_file())
        what = f"only loose files such as {loose[0]!r}" if loose else "nothing"
        raise DataError(
            f"image folder {root} has no class subfolders with images ({what}); "
            f"{LAYOUT_HINT}, so sort the images into one subfolder per class"
        )
    return classes


def _images(folder: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath, name)
            if not name.lower().endswith(IMG_EXTENSIONS):
                raise DataError(
                    f"{path} is not an image (extensions allowed: {' '.join(IMG_EXTENSIONS)}); "
                    "remove it from the image folder"
                )
            found.append(path)
    if not found:
        raise DataError(f"class folder {folder} holds no images; add images or remove the folder ({LAYOUT_HINT})")
    return sorted(found)


def _load(path: Path) -> Image.Image:
    """Open and fully decode one image, turning any Pillow failure into a DataError."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()  # closing the file releases the decoded pixels of ``img`` itself
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"cannot read image {path} ({reason}); remove or replace the file") from None
