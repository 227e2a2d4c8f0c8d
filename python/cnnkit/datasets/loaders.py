"""Detection annotation files: YOLO label folders and COCO JSON, read and written.

Records are the same dicts the procedural datasets give, plus the image's name:
``{"file", "boxes" (K, 4) float32 xyxy pixels, "classes" (K,) int64, ...}``, so a
loaded dataset and a generated one feed the same training code. The formats are
small and documented, so they are parsed here with the standard library rather
than pulling in a dependency (pycocotools is used only to test the JSON we write).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_coco", "load_yolo_labels", "save_coco", "save_yolo_labels"]

# Image extensions that save_yolo_labels strips from a record's "file".
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
# labelImg keeps its class list in the labels folder; it is not a label file.
CLASS_LIST_FILE = "classes.txt"


def _size_pair(value: Any, what: str, fn: str) -> tuple[float, float]:
    if (
        isinstance(value, (tuple, list, np.ndarray))
        and len(value) == 2
        and all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            for v in value
        )
        and all(math.isfinite(v) and v > 0 for v in value)
    ):
        return float(value[0]), float(value[1])
    raise ValueError(f"{fn}: {what} must be a pair (H, W) of positive numbers, got {value!r}")


def _size_lookup(image_size: Any, fn: str):
    """``image_size`` (a pair or a mapping stem -> pair) to a function of the stem."""
    if isinstance(image_size, Mapping):
        sizes = {str(k): _size_pair(v, f"image_size[{k!r}]", fn) for k, v in image_size.items()}

        def lookup(stem: str) -> tuple[float, float]:
            if stem not in sizes:
                raise ValueError(f"{fn}: image_size has no entry for {stem!r}")
            return sizes[stem]

        return lookup
    size = _size_pair(image_size, "image_size", fn)
    return lambda stem: size


def _check_class_names(class_names: Any, fn: str) -> list[str] | None:
    if class_names is None:
        return None
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise TypeError(f"{fn}: class_names must be a sequence of str, got {class_names!r}")
    if not all(isinstance(c, str) for c in class_names):
        raise TypeError(f"{fn}: class_names must be a sequence of str, got {class_names!r}")
    return list(class_names)


def _directory(path: Any, fn: str, name: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{fn}: {name} must be a path, got {type(path).__name__}")
    return Path(path)


def load_yolo_labels(
    labels_dir: str | os.PathLike,
    image_size: tuple[int, int] | Mapping[str, tuple[int, int]],
    *,
    class_names: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Read a YOLO label folder: one ``.txt`` per image, one ``class cx cy w h`` line per box.

    ``cx, cy, w, h`` are normalised by the image width and height (all in [0, 1]),
    ``class`` is a non-negative integer. Blank lines are skipped and an empty
    file is an image without objects. ``classes.txt`` (labelImg's class list)
    is not a label file and is skipped.

    Parameters
    ----------
    labels_dir : str or os.PathLike
        The folder of ``.txt`` files (not searched recursively).
    image_size : (H, W) or mapping
        The pixel size ``(H, W)`` of every image, or a mapping from a label
        file's stem (its name without ``.txt``) to that image's ``(H, W)``.
    class_names : sequence of str, optional
        When given, class indices must be below ``len(class_names)``.

    Returns
    -------
    list of dict
        Sorted by file name; per label file ``"file"`` (its stem, which is the
        image's name without extension), ``"boxes"`` ``(K, 4)`` float32 ``xyxy``
        pixels and ``"classes"`` ``(K,)`` int64.

    Raises
    ------
    ValueError
        When the folder does not exist, a size is missing or invalid, or a line
        is malformed (the message names the file and line).
    """
    fn = "load_yolo_labels()"
    folder = _directory(labels_dir, fn, "labels_dir")
    if not folder.is_dir():
        raise ValueError(f"{fn}: labels_dir {str(folder)!r} is not a directory")
    size_of = _size_lookup(image_size, fn)
    names = _check_class_names(class_names, fn)

    records = []
    files = sorted(p for p in folder.glob("*.txt") if p.name != CLASS_LIST_FILE and p.is_file())
    for path in files:
        hgt, wid = size_of(path.stem)
        boxes, classes = [], []
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{fn}: {path} is not UTF-8 text ({err})") from None
        for lineno, line in enumerate(text.splitlines(), start=1):
            tokens = line.split()
            if not tokens:
                continue
            where = f"{fn}: {path}, line {lineno}"
            if len(tokens) != 5:
                raise ValueError(
                    f"{where}: expected 5 fields 'class cx cy w h', got {len(tokens)}: {line!r}"
                )
            try:
                cls = int(tokens[0])
                values = [float(t) for t in tokens[1:]]
            except ValueError:
                raise ValueError(
                    f"{where}: expected an integer class and 4 numbers, got {line!r}"
                ) from None
            if cls < 0 or (names is not None and cls >= len(names)):
                limit = "" if names is None else f" and < {len(names)} (len(class_names))"
                raise ValueError(f"{where}: class must be >= 0{limit}, got {cls}")
            if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
                raise ValueError(f"{where}: cx cy w h must be normalised to [0, 1], got {line!r}")
            cx, cy, w, h = values
            boxes.append(
                [(cx - w / 2) * wid, (cy - h / 2) * hgt, (cx + w / 2) * wid, (cy + h / 2) * hgt]
            )
            classes.append(cls)
        records.append(
            {
                "file": path.stem,
                "boxes": np.array(boxes, dtype=np.float32).reshape(-1, 4),
                "classes": np.array(classes, dtype=np.int64),
            }
        )
    return records


def _record_arrays(record: Any, index: int, fn: str) -> tuple[str, np.ndarray, np.ndarray]:
    """Validated ``(file, boxes, classes)`` of ``records[index]``."""
    where = f"{fn}: records[{index}]"
    if not isinstance(record, Mapping) or not {"file", "boxes", "classes"} <= record.keys():
        raise ValueError(f"{where} must be a dict with 'file', 'boxes' and 'classes'")
    file = record["file"]
    if not isinstance(file, (str, os.PathLike)) or not str(file):
        raise ValueError(f"{where}['file'] must be a non-empty file name, got {file!r}")
    boxes = np.asarray(record["boxes"], dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{where}['boxes'] must have shape (K, 4), got {boxes.shape}")
    if not np.all(np.isfinite(boxes)) or np.any(boxes[:, 2:] < boxes[:, :2]):
        raise ValueError(f"{where}['boxes'] must be finite xyxy boxes with x1 <= x2, y1 <= y2")
    classes = np.asarray(record["classes"])
    if classes.shape != (len(boxes),) or (
        classes.size and not np.issubdtype(classes.dtype, np.integer)
    ):
        raise ValueError(
            f"{where}['classes'] must be {len(boxes)} integers, got shape {classes.shape} "
            f"and dtype {classes.dtype}"
        )
    if np.any(classes < 0):
        raise ValueError(f"{where}['classes'] must be >= 0")
    return str(file), boxes, classes.astype(np.int64)


def save_yolo_labels(
    labels_dir: str | os.PathLike,
    records: Sequence[Mapping[str, Any]],
    image_size: tuple[int, int] | Mapping[str, tuple[int, int]],
) -> None:
    """Write records as a YOLO label folder (the inverse of :func:`load_yolo_labels`).

    Each record gives ``<stem>.txt``, where the stem is the record's ``"file"``
    name without an image extension (``.jpg``, ``.png``, ...); ``image_size``
    is a pair for every image or a mapping from stem to ``(H, W)``. The folder is
    created if needed and existing label files of the same names are replaced.
    Boxes must lie inside their image.
    """
    fn = "save_yolo_labels()"
    folder = _directory(labels_dir, fn, "labels_dir")
    size_of = _size_lookup(image_size, fn)
    if isinstance(records, (str, Mapping)) or not isinstance(records, Sequence):
        raise TypeError(f"{fn}: records must be a sequence of dicts, got {type(records).__name__}")
    outputs: dict[str, str] = {}
    for index, record in enumerate(records):
        file, boxes, classes = _record_arrays(record, index, fn)
        name = Path(file).name
        suffix = Path(name).suffix
        stem = name[: -len(suffix)] if suffix.lower() in IMAGE_SUFFIXES else name
        if stem in outputs:
            raise ValueError(f"{fn}: records[{index}] repeats the file {stem!r}")
        hgt, wid = size_of(stem)
        if np.any(boxes[:, :2] < 0) or np.any(boxes[:, 2] > wid) or np.any(boxes[:, 3] > hgt):
            raise ValueError(
                f"{fn}: records[{index}] ({stem!r}) has boxes outside the image (H, W) = "
                f"({hgt:g}, {wid:g})"
            )
        cx = (boxes[:, 0] + boxes[:, 2]) / (2 * wid)
        cy = (boxes[:, 1] + boxes[:, 3]) / (2 * hgt)
        w = (boxes[:, 2] - boxes[:, 0]) / wid
        h = (boxes[:, 3] - boxes[:, 1]) / hgt
        lines = [
            f"{c} {a:.9g} {b:.9g} {d:.9g} {e:.9g}\n"
            for c, a, b, d, e in zip(classes.tolist(), cx, cy, w, h, strict=True)
        ]
        outputs[stem] = "".join(lines)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, text in outputs.items():
        (folder / f"{stem}.txt").write_text(text, encoding="utf-8")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_coco(annotation_json: str | os.PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """Read a COCO object-detection annotation file.

    Categories are renumbered to contiguous classes ``0 .. C-1`` in the order of
    their ids (COCO's ids have gaps). Boxes are converted from COCO's
    ``[x, y, width, height]`` to ``xyxy`` pixels. A file without
    ``"annotations"`` (e.g. test-set image info) gives images without objects.

    Parameters
    ----------
    annotation_json : str or os.PathLike
        Path of the JSON file with ``"images"``, ``"annotations"`` and ``"categories"``.

    Returns
    -------
    records : list of dict
        One per entry of ``"images"``, in file order: ``"file"`` (``file_name``),
        ``"image_id"``, ``"boxes"`` ``(K, 4)`` float32 ``xyxy``, ``"classes"``
        ``(K,)`` int64, ``"iscrowd"`` ``(K,)`` bool and ``"area"`` ``(K,)``
        float32 (the file's ``area``, else the box area), in annotation order;
        plus ``"height"`` and ``"width"`` when the image entry has them.
    class_names : list of str
        The category names, index ``k`` naming class ``k``.

    Raises
    ------
    ValueError
        When the file is not valid JSON or not COCO detection data (the message
        names the file and the offending entry).
    """
    fn = "load_coco()"
    path = _directory(annotation_json, fn, "annotation_json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{fn}: {path} does not exist") from None
    except IsADirectoryError:  # the bare OSError named neither the function nor the argument
        raise IsADirectoryError(f"{fn}: annotation_json {str(path)!r} is a folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{fn}: {path} is not valid JSON ({err})") from None
    where = f"{fn}: {path}"
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{where}: expected a list under {key!r}")
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise ValueError(f"{where}: expected a list under 'annotations'")

    categories = {}
    for k, cat in enumerate(data["categories"]):
        if (
            not isinstance(cat, dict)
            or not isinstance(cat.get("id"), int)
            or not isinstance(cat.get("name"), str)
        ):
            raise ValueError(f"{where}: categories[{k}] needs an int 'id' and a str 'name'")
        if cat["id"] in categories:
            raise ValueError(f"{where}: categories[{k}] repeats the id {cat['id']}")
        categories[cat["id"]] = cat["name"]
    ids = sorted(categories)
    class_of = {cid: k for k, cid in enumerate(ids)}

    records: list[dict[str, Any]] = []
    index_of: dict[int, int] = {}
    for k, image in enumerate(data["images"]):
        if (
            not isinstance(image, dict)
            or not isinstance(image.get("id"), int)
            or not isinstance(image.get("file_name"), str)
        ):
            raise ValueError(f"{where}: images[{k}] needs an int 'id' and a str 'file_name'")
        if image["id"] in index_of:
            raise ValueError(f"{where}: images[{k}] repeats the id {image['id']}")
        index_of[image["id"]] = k
        record: dict[str, Any] = {"file": image["file_name"], "image_id": image["id"]}
        for key in ("height", "width"):
            if key in image:
                if not _is_number(image[key]) or image[key] <= 0:
                    raise ValueError(f"{where}: images[{k}] {key!r} must be a positive number")
                record[key] = image[key]
        records.append(record)

    per_image: list[list[tuple]] = [[] for _ in records]
    for k, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise ValueError(f"{where}: annotations[{k}] must be an object")
        image_id, cat_id, bbox = ann.get("image_id"), ann.get("category_id"), ann.get("bbox")
        if image_id not in index_of:
            raise ValueError(
                f"{where}: annotations[{k}] has image_id {image_id!r}, which is not in images"
            )
        if cat_id not in class_of:
            raise ValueError(
                f"{where}: annotations[{k}] has category_id {cat_id!r}, which is not in categories"
            )
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(_is_number(v) for v in bbox)
            or bbox[2] < 0
            or bbox[3] < 0
        ):
            raise ValueError(
                f"{where}: annotations[{k}] 'bbox' must be [x, y, width, height] with "
                f"width, height >= 0, got {bbox!r}"
            )
        iscrowd = ann.get("iscrowd", 0)
        if iscrowd not in (0, 1) or isinstance(iscrowd, float):
            raise ValueError(f"{where}: annotations[{k}] 'iscrowd' must be 0 or 1, got {iscrowd!r}")
        area = ann.get("area", bbox[2] * bbox[3])
        if not _is_number(area) or area < 0:
            raise ValueError(f"{where}: annotations[{k}] 'area' must be a number >= 0")
        x, y, w, h = bbox
        per_image[index_of[image_id]].append(
            ([x, y, x + w, y + h], class_of[cat_id], bool(iscrowd), area)
        )

    for record, anns in zip(records, per_image, strict=True):
        record["boxes"] = np.array([a[0] for a in anns], dtype=np.float32).reshape(-1, 4)
        record["classes"] = np.array([a[1] for a in anns], dtype=np.int64)
        record["iscrowd"] = np.array([a[2] for a in anns], dtype=bool)
        record["area"] = np.array([a[3] for a in anns], dtype=np.float32)
    return records, [categories[cid] for cid in ids]


def save_coco(
    path: str | os.PathLike, records: Sequence[Mapping[str, Any]], class_names: Sequence[str]
) -> None:
    """Write records as a COCO detection JSON file (the inverse of :func:`load_coco`).

    Class ``k`` becomes category id ``k + 1`` named ``class_names[k]``. An image
    takes its record's ``"image_id"`` when present, else its position + 1, and
    ``"height"``/``"width"`` when present. Annotations get ids ``1, 2, ...``,
    ``bbox = [x1, y1, x2 - x1, y2 - y1]``, and the record's ``"iscrowd"`` and
    ``"area"`` when present (else 0 and the box area).
    """
    fn = "save_coco()"
    out = _directory(path, fn, "path")
    names = _check_class_names(class_names, fn)
    if not names:
        raise ValueError(f"{fn}: class_names must not be empty")
    if isinstance(records, (str, Mapping)) or not isinstance(records, Sequence):
        raise TypeError(f"{fn}: records must be a sequence of dicts, got {type(records).__name__}")
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    seen: set[int] = set()
    for index, record in enumerate(records):
        file, boxes, classes = _record_arrays(record, index, fn)
        if np.any(classes >= len(names)):
            raise ValueError(
                f"{fn}: records[{index}]['classes'] must be < {len(names)} (len(class_names))"
            )
        image_id = record.get("image_id", index + 1)
        if isinstance(image_id, bool) or not isinstance(image_id, (int, np.integer)):
            raise ValueError(f"{fn}: records[{index}]['image_id'] must be an int, got {image_id!r}")
        if int(image_id) in seen:
            raise ValueError(f"{fn}: records[{index}] repeats the image_id {image_id}")
        seen.add(int(image_id))
        image = {"id": int(image_id), "file_name": file}
        for key in ("height", "width"):
            if key in record:
                image[key] = record[key].item() if hasattr(record[key], "item") else record[key]
        images.append(image)
        k = len(boxes)
        iscrowd = np.asarray(record.get("iscrowd", np.zeros(k, bool)))
        wh = boxes[:, 2:] - boxes[:, :2]
        area = np.asarray(record.get("area", wh[:, 0] * wh[:, 1]), dtype=np.float64)
        if iscrowd.shape != (k,) or area.shape != (k,):
            raise ValueError(
                f"{fn}: records[{index}] 'iscrowd' and 'area' must have shape ({k},), got "
                f"{iscrowd.shape} and {area.shape}"
            )
        for b, c, crowd, a in zip(boxes.tolist(), classes.tolist(), iscrowd, area, strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": int(image_id),
                    "category_id": c + 1,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "area": float(a),
                    "iscrowd": int(bool(crowd)),
                }
            )
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": name} for k, name in enumerate(names)],
    }
    from ..saving.model_files import atomic_write

    if out.is_dir():
        raise IsADirectoryError(f"{fn}: path {str(out)!r} is a folder; give a file name")
    if not out.absolute().parent.is_dir():
        raise FileNotFoundError(f"{fn}: the folder of path {str(out)!r} does not exist")
    text = json.dumps(data).encode("utf-8")
    # Through a temporary file and a rename: an interrupted write never leaves half a file
    # in place of an existing annotation file.
    atomic_write(out, lambda f: f.write(text))
