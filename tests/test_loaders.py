"""YOLO label folders and COCO JSON: hand-computed values, round trips through the
writers, a cross-check with pycocotools, and every malformed-file path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnkit.datasets import load_coco, load_yolo_labels, save_coco, save_yolo_labels, shapes


def shape_records(n, size, seed=0):
    _, targets = shapes(n, image_size=size, seed=seed)
    return [{"file": f"img_{i:03d}.png", **t} for i, t in enumerate(targets)]


def test_yolo_values(tmp_path):
    (tmp_path / "b.txt").write_text("0 0.5 0.5 0.25 0.5\n\n  2 0.1 0.2 0.2 0.4  \n")
    (tmp_path / "a.txt").write_text("")
    (tmp_path / "classes.txt").write_text("circle\nsquare\ntriangle\n")
    (tmp_path / "notes.md").write_text("not a label file")
    records = load_yolo_labels(tmp_path, (100, 200))
    assert [r["file"] for r in records] == ["a", "b"]
    assert records[0]["boxes"].shape == (0, 4) and records[0]["classes"].shape == (0,)
    np.testing.assert_allclose(records[1]["boxes"], [[75, 25, 125, 75], [0, 0, 40, 40]], atol=1e-5)
    np.testing.assert_array_equal(records[1]["classes"], [0, 2])
    assert records[1]["boxes"].dtype == np.float32 and records[1]["classes"].dtype == np.int64


def test_yolo_round_trip(tmp_path):
    records = shape_records(25, (48, 64))
    save_yolo_labels(tmp_path / "labels", records, (48, 64))
    loaded = load_yolo_labels(tmp_path / "labels", (48, 64), class_names=["c", "s", "t"])
    assert [r["file"] for r in loaded] == [f"img_{i:03d}" for i in range(25)]
    for a, b in zip(records, loaded, strict=True):
        np.testing.assert_allclose(b["boxes"], a["boxes"], atol=1e-4)
        np.testing.assert_array_equal(b["classes"], a["classes"])


def test_yolo_round_trip_per_image_sizes(tmp_path):
    sizes = {"small": (32, 48), "big": (80, 60)}
    records = []
    for i, (stem, size) in enumerate(sizes.items()):
        _, targets = shapes(1, image_size=size, seed=i)
        records.append({"file": stem + ".jpg", **targets[0]})
    records.append({"file": "empty", "boxes": np.zeros((0, 4)), "classes": np.zeros(0, int)})
    sizes["empty"] = (10, 10)
    save_yolo_labels(tmp_path, records, sizes)
    assert (tmp_path / "empty.txt").read_text() == ""
    loaded = {r["file"]: r for r in load_yolo_labels(tmp_path, sizes)}
    assert sorted(loaded) == ["big", "empty", "small"]
    for r in records:
        got = loaded[r["file"].split(".")[0]]
        np.testing.assert_allclose(got["boxes"], r["boxes"], atol=1e-4)
        np.testing.assert_array_equal(got["classes"], r["classes"])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("0 0.5 0.5 0.2\n", r"bad\.txt, line 1: expected 5 fields 'class cx cy w h', got 4"),
        ("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2 0.1\n", r"bad\.txt, line 2: expected 5 fields"),
        ("\n\na 0.5 0.5 0.2 0.2\n", r"bad\.txt, line 3: expected an integer class and 4 numbers"),
        ("1.5 0.5 0.5 0.2 0.2\n", r"line 1: expected an integer class"),
        ("0 0.5 x 0.2 0.2\n", r"line 1: expected an integer class and 4 numbers"),
        ("-1 0.5 0.5 0.2 0.2\n", r"line 1: class must be >= 0, got -1"),
        ("0 0.5 0.5 1.2 0.2\n", r"line 1: cx cy w h must be normalised to \[0, 1\]"),
        ("0 0.5 0.5 -0.1 0.2\n", r"line 1: cx cy w h must be normalised"),
        ("0 nan 0.5 0.1 0.2\n", r"line 1: cx cy w h must be normalised"),
    ],
)
def test_yolo_malformed(tmp_path, text, match):
    (tmp_path / "bad.txt").write_text(text)
    with pytest.raises(ValueError, match=r"load_yolo_labels\(\): .*" + match):
        load_yolo_labels(tmp_path, (10, 10))


def test_yolo_rejections(tmp_path):
    (tmp_path / "x.txt").write_text("3 0.5 0.5 0.2 0.2\n")
    with pytest.raises(ValueError, match=r"x\.txt, line 1: class must be >= 0 and < 3"):
        load_yolo_labels(tmp_path, (10, 10), class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"load_yolo_labels\(\): image_size has no entry for 'x'"):
        load_yolo_labels(tmp_path, {"y": (10, 10)})
    with pytest.raises(ValueError, match=r"image_size must be a pair \(H, W\) of positive"):
        load_yolo_labels(tmp_path, (10, 0))
    with pytest.raises(ValueError, match=r"image_size\['y'\] must be a pair"):
        load_yolo_labels(tmp_path, {"y": 10})
    with pytest.raises(ValueError, match=r"load_yolo_labels\(\): labels_dir .* is not a directory"):
        load_yolo_labels(tmp_path / "missing", (10, 10))
    with pytest.raises(TypeError, match=r"load_yolo_labels\(\): labels_dir must be a path"):
        load_yolo_labels(3, (10, 10))
    with pytest.raises(TypeError, match=r"load_yolo_labels\(\): class_names must be a sequence"):
        load_yolo_labels(tmp_path, (10, 10), class_names="abc")
    (tmp_path / "x.txt").write_bytes(b"\xff\xfe0 0.5")
    with pytest.raises(ValueError, match=r"load_yolo_labels\(\): .*x\.txt is not UTF-8"):
        load_yolo_labels(tmp_path, (10, 10))


@pytest.mark.parametrize(
    ("records", "match"),
    [
        ([{"file": "a", "boxes": [[0, 0, 11, 5]], "classes": [0]}], r"boxes outside the image"),
        ([{"file": "a", "boxes": [[-1, 0, 5, 5]], "classes": [0]}], r"boxes outside the image"),
        ([{"file": "a", "boxes": [[0, 0, 5]], "classes": [0]}], r"must have shape \(K, 4\)"),
        ([{"file": "a", "boxes": [[5, 0, 4, 5]], "classes": [0]}], r"x1 <= x2"),
        ([{"file": "a", "boxes": [[0, 0, 4, 5]], "classes": [0, 1]}], r"must be 1 integers"),
        ([{"file": "a", "boxes": [[0, 0, 4, 5]], "classes": [0.5]}], r"must be 1 integers"),
        ([{"file": "a", "boxes": [[0, 0, 4, 5]], "classes": [-1]}], r"'classes'\] must be >= 0"),
        ([{"file": "a", "boxes": [[0, 0, 4, 5]]}], r"records\[0\] must be a dict with 'file'"),
        ([{"file": "", "boxes": [], "classes": []}], r"\['file'\] must be a non-empty file name"),
        (
            [
                {"file": "a.png", "boxes": [], "classes": []},
                {"file": "a", "boxes": [], "classes": []},
            ],
            r"records\[1\] repeats the file 'a'",
        ),
    ],
)
def test_save_yolo_rejections(tmp_path, records, match):
    with pytest.raises(ValueError, match=r"save_yolo_labels\(\): .*" + match):
        save_yolo_labels(tmp_path, records, (10, 10))
    assert not any(tmp_path.iterdir())  # nothing written


def test_save_yolo_records_type(tmp_path):
    with pytest.raises(TypeError, match=r"save_yolo_labels\(\): records must be a sequence"):
        save_yolo_labels(tmp_path, {"file": "a"}, (10, 10))


COCO = {
    "images": [
        {"id": 7, "file_name": "b.jpg", "height": 40, "width": 60},
        {"id": 2, "file_name": "a.jpg"},
    ],
    "annotations": [
        {"id": 1, "image_id": 7, "category_id": 5, "bbox": [10, 20, 30, 5], "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 4, 4], "iscrowd": 1, "area": 9},
        {"id": 3, "image_id": 7, "category_id": 5, "bbox": [1.5, 2, 3, 4]},
    ],
    "categories": [{"id": 5, "name": "square"}, {"id": 1, "name": "circle"}],
}


def test_coco_values(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(COCO))
    records, names = load_coco(path)
    assert names == ["circle", "square"]  # category-id order
    assert [r["file"] for r in records] == ["b.jpg", "a.jpg"]  # file order
    b, a = records
    assert b["image_id"] == 7 and b["height"] == 40 and b["width"] == 60
    assert "height" not in a
    np.testing.assert_array_equal(b["boxes"], [[10, 20, 40, 25], [0, 0, 4, 4], [1.5, 2, 4.5, 6]])
    np.testing.assert_array_equal(b["classes"], [1, 0, 1])
    np.testing.assert_array_equal(b["iscrowd"], [False, True, False])
    np.testing.assert_array_equal(b["area"], [150, 9, 12])
    assert b["boxes"].dtype == np.float32 and b["classes"].dtype == np.int64
    assert b["iscrowd"].dtype == bool
    assert a["boxes"].shape == (0, 4) and a["classes"].shape == (0,)


def test_coco_round_trip(tmp_path):
    records = shape_records(20, 64, seed=3)
    records[0]["iscrowd"] = np.ones(len(records[0]["boxes"]), bool)
    records[1]["height"] = records[1]["width"] = 64
    path = tmp_path / "out.json"
    save_coco(path, records, ["circle", "square", "triangle"])
    loaded, names = load_coco(path)
    assert names == ["circle", "square", "triangle"]
    assert [r["image_id"] for r in loaded] == list(range(1, 21))
    assert loaded[1]["height"] == 64 and "height" not in loaded[2]
    for a, b in zip(records, loaded, strict=True):
        assert b["file"] == a["file"]
        np.testing.assert_array_equal(b["boxes"], a["boxes"])
        np.testing.assert_array_equal(b["classes"], a["classes"])
        wh = a["boxes"][:, 2:] - a["boxes"][:, :2]
        np.testing.assert_allclose(b["area"], wh[:, 0] * wh[:, 1])
    assert loaded[0]["iscrowd"].all() and not loaded[1]["iscrowd"].any()
    # Saving what was loaded gives the same file again.
    path2 = tmp_path / "again.json"
    save_coco(path2, loaded, names)
    assert json.loads(path2.read_text()) == json.loads(path.read_text())


def test_coco_matches_pycocotools(tmp_path):
    coco_mod = pytest.importorskip("pycocotools.coco")
    records = shape_records(15, (48, 64), seed=4)
    path = tmp_path / "out.json"
    save_coco(path, records, ["circle", "square", "triangle"])
    coco = coco_mod.COCO(str(path))
    assert sorted(coco.getCatIds()) == [1, 2, 3]
    loaded, _ = load_coco(path)
    for rec in loaded:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[rec["image_id"]]))
        xywh = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        np.testing.assert_allclose(rec["boxes"][:, :2], xywh[:, :2])
        np.testing.assert_allclose(rec["boxes"][:, 2:], xywh[:, :2] + xywh[:, 2:])
        np.testing.assert_array_equal(rec["classes"], [a["category_id"] - 1 for a in anns])


def _with(**changes):
    data = json.loads(json.dumps(COCO))
    for key, value in changes.items():
        data[key] = value
    return data


def _ann(**fields):
    return [{"id": 1, "image_id": 7, "category_id": 5, "bbox": [0, 0, 1, 1], **fields}]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", r"is not valid JSON"),
        ("[1, 2]", r"expected a JSON object, got list"),
        (_with(images=None), r"expected a list under 'images'"),
        (_with(categories={}), r"expected a list under 'categories'"),
        (_with(annotations={}), r"expected a list under 'annotations'"),
        (_with(categories=[{"id": "1", "name": "a"}]), r"categories\[0\] needs an int 'id'"),
        (_with(categories=[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]), r"repeats the id 1"),
        (_with(images=[{"id": 1}]), r"images\[0\] needs an int 'id' and a str 'file_name'"),
        (
            _with(images=[{"id": 1, "file_name": "a"}, {"id": 1, "file_name": "b"}]),
            r"images\[1\] repeats the id 1",
        ),
        (
            _with(images=[{"id": 7, "file_name": "a", "width": -3}]),
            r"images\[0\] 'width' must be a positive number",
        ),
        (_with(annotations=[3]), r"annotations\[0\] must be an object"),
        (_with(annotations=_ann(image_id=99)), r"annotations\[0\] has image_id 99, which is not"),
        (_with(annotations=_ann(category_id=2)), r"has category_id 2, which is not in categories"),
        (_with(annotations=_ann(bbox=[0, 0, 1])), r"'bbox' must be \[x, y, width, height\]"),
        (_with(annotations=_ann(bbox=[0, 0, -1, 1])), r"'bbox' must be \[x, y, width, height\]"),
        (_with(annotations=_ann(bbox=[0, 0, "1", 1])), r"'bbox' must be"),
        (_with(annotations=_ann(iscrowd=2)), r"'iscrowd' must be 0 or 1, got 2"),
        (_with(annotations=_ann(area=-1)), r"annotations\[0\] 'area' must be a number >= 0"),
    ],
)
def test_coco_malformed(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ValueError, match=r"load_coco\(\): .*bad\.json.*" + match):
        load_coco(path)


def test_coco_missing_file_and_no_annotations(tmp_path):
    with pytest.raises(ValueError, match=r"load_coco\(\): .*nope\.json does not exist"):
        load_coco(tmp_path / "nope.json")
    path = tmp_path / "info.json"
    data = _with()
    del data["annotations"]
    path.write_text(json.dumps(data))
    records, names = load_coco(path)
    assert names == ["circle", "square"]
    assert len(records) == 2 and all(len(r["boxes"]) == 0 for r in records)


@pytest.mark.parametrize(
    ("records", "names", "exc", "match"),
    [
        (
            [{"file": "a", "boxes": [[0, 0, 1, 1]], "classes": [2]}],
            ["x", "y"],
            ValueError,
            r"records\[0\]\['classes'\] must be < 2 \(len\(class_names\)\)",
        ),
        ([], [], ValueError, r"class_names must not be empty"),
        ([], "ab", TypeError, r"class_names must be a sequence of str"),
        ("abc", ["x"], TypeError, r"records must be a sequence of dicts"),
        (
            [
                {"file": "a", "boxes": [], "classes": [], "image_id": 3},
                {"file": "b", "boxes": [], "classes": [], "image_id": 3},
            ],
            ["x"],
            ValueError,
            r"records\[1\] repeats the image_id 3",
        ),
        (
            [{"file": "a", "boxes": [], "classes": [], "image_id": "3"}],
            ["x"],
            ValueError,
            r"records\[0\]\['image_id'\] must be an int",
        ),
        (
            [{"file": "a", "boxes": [[0, 0, 1, 1]], "classes": [0], "area": [1, 2]}],
            ["x"],
            ValueError,
            r"records\[0\] 'iscrowd' and 'area' must have shape \(1,\)",
        ),
    ],
)
def test_save_coco_rejections(tmp_path, records, names, exc, match):
    with pytest.raises(exc, match=r"save_coco\(\): " + match):
        save_coco(tmp_path / "o.json", records, names)
    assert not (tmp_path / "o.json").exists()


def test_coco_files_name_a_folder_and_an_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    # A folder was pathlib's bare IsADirectoryError; save_coco wrote in place, so a failure
    # mid-write left half a file where the previous one was.
    records = [{"file": "a.png", "boxes": [[0.0, 0.0, 1.0, 1.0]], "classes": [0]}]
    with pytest.raises(
        IsADirectoryError, match=r"^load_coco\(\): annotation_json '.*' is a folder"
    ):
        load_coco(tmp_path)
    with pytest.raises(IsADirectoryError, match=r"^save_coco\(\): path '.*' is a folder"):
        save_coco(tmp_path, records, ["a"])
    with pytest.raises(FileNotFoundError, match=r"^save_coco\(\): the folder of path"):
        save_coco(tmp_path / "missing" / "o.json", records, ["a"])
    path = tmp_path / "o.json"
    path.write_text("previous")

    def fail(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", fail)
    with pytest.raises(OSError, match="No space left"):
        save_coco(path, records, ["a"])
    monkeypatch.undo()
    assert path.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == [
        "o.json"
    ]
    save_coco(path, records, ["a"])
    assert load_coco(path)[1] == ["a"]
