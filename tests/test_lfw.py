"""The LFW layout: image folders and both views of the pairs files, on a fake tree."""

import numpy as np
import pytest

from cnnkit import datasets

Image = pytest.importorskip("PIL.Image")

PEOPLE = {"Ada_Lovelace": 3, "Alan_Turing": 2, "Grace_Hopper": 1}


def _tree(root, size=(40, 30)):
    rng = np.random.default_rng(0)
    pixels = {}
    for name, count in PEOPLE.items():
        (root / name).mkdir()
        for k in range(1, count + 1):
            array = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(array).save(root / name / f"{name}_{k:04d}.png")
            pixels[name, k] = array
    (root / "notes.txt").write_text("not a person")
    (root / "Ada_Lovelace" / "readme.txt").write_text("not an image")
    (root / "Empty_Person").mkdir()
    return pixels


def test_image_folder_reads_the_layout(tmp_path):
    pixels = _tree(tmp_path)
    data = datasets.image_folder(tmp_path)
    assert data.class_names == ["Ada_Lovelace", "Alan_Turing", "Grace_Hopper"]
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 2]
    assert data.images.shape == (6, 40, 30, 3) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images[3], pixels["Alan_Turing", 1])
    assert data.paths[5].endswith("Grace_Hopper_0001.png")


def test_image_folder_resize_crop_and_min_images(tmp_path):
    _tree(tmp_path)
    data = datasets.image_folder(tmp_path, size=16, crop=(20, 20), min_images=2)
    assert data.class_names == ["Ada_Lovelace", "Alan_Turing"]
    assert data.images.shape == (5, 16, 16, 3)
    full = datasets.load_images([data.paths[0]], crop=20)
    assert full.shape == (1, 20, 20, 3)


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match=r"image_folder\(\): root must be an existing folder"):
        datasets.image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"image_folder\(\): no class folder"):
        datasets.image_folder(tmp_path)
    _tree(tmp_path)
    with pytest.raises(ValueError, match=r"crop \(50, 50\) is larger than the image"):
        datasets.image_folder(tmp_path, crop=50)
    with pytest.raises(ValueError, match=r"min_images must be >= 1"):
        datasets.image_folder(tmp_path, min_images=0)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "Alan_Turing" / "x.png")
    with pytest.raises(ValueError, match=r"different sizes.*pass size="):
        datasets.image_folder(tmp_path)
    (tmp_path / "Alan_Turing" / "x.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"cannot read image .*x\.png"):
        datasets.image_folder(tmp_path, size=8)


VIEW2 = """2\t2
Ada_Lovelace\t1\t2
Ada_Lovelace\t2\t3
Ada_Lovelace\t1\tAlan_Turing\t2
Grace_Hopper\t1\tAlan_Turing\t1
Alan_Turing\t1\t2
Ada_Lovelace 1 3
Alan_Turing\t2\tGrace_Hopper\t1
Ada_Lovelace\t3\tGrace_Hopper\t1

"""

VIEW1 = """1
Alan_Turing\t1\t2
Ada_Lovelace\t1\tGrace_Hopper\t1
"""


def test_read_view2(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text(VIEW2)
    pairs = datasets.read_lfw_pairs(path)
    assert pairs.same.tolist() == [True, True, False, False] * 2
    assert pairs.fold.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert pairs.name1[2] == "Ada_Lovelace" and pairs.name2[2] == "Alan_Turing"
    assert pairs.name2[1] == "Ada_Lovelace"
    assert pairs.number1.tolist() == [1, 2, 1, 1, 1, 1, 2, 3]
    assert pairs.number2.tolist() == [2, 3, 2, 1, 2, 3, 1, 1]
    assert pairs.number1.dtype == np.int64
    assert datasets.lfw_image_path(tmp_path, "Ada_Lovelace", 3) == (
        tmp_path / "Ada_Lovelace" / "Ada_Lovelace_0003.jpg"
    )


def test_read_view1(tmp_path):
    path = tmp_path / "pairsDevTrain.txt"
    path.write_text(VIEW1)
    pairs = datasets.read_lfw_pairs(path)
    assert pairs.same.tolist() == [True, False]
    assert pairs.fold.tolist() == [0, 0]
    assert (pairs.name1, pairs.name2) == (
        ["Alan_Turing", "Ada_Lovelace"],
        ["Alan_Turing", "Grace_Hopper"],
    )


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "is empty"),
        ("ten 300\n", "line 1 of .*expected 'N' \\(view 1\\) or 'SETS N'"),
        ("1 2 3\n", "line 1 of .*expected 'N'"),
        ("0\n", "line 1 of .*counts must be >= 1"),
        ("1\nA\t1\t2\n", "announces 2 pairs, found 1 lines"),
        ("1\nA\t1\t2\tB\nA\t1\tB\t2\n", "line 2 of .*expected a same pair"),
        ("1\nA\t1\t2\nA\t1\t2\n", "line 3 of .*expected a different pair"),
        ("1\nA\t1\tx\nA\t1\tB\t2\n", "line 2 of .*image number must be an int, got 'x'"),
        ("1\nA\t1\t2\nA\t0\tB\t2\n", "line 3 of .*image number must be >= 1, got 0"),
    ],
)
def test_read_pairs_errors(tmp_path, text, match):
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"read_lfw_pairs\(\): .*" + match):
        datasets.read_lfw_pairs(path)


def test_read_pairs_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"read_lfw_pairs\(\): cannot read"):
        datasets.read_lfw_pairs(tmp_path / "nope.txt")


def test_pairs_file_that_is_not_text_and_bad_image_paths(tmp_path):
    # A binary pairs file was a bare UnicodeDecodeError; lfw_image_path made 'A_-001.jpg'
    # of number -1 and a path outside root of a name with '..'.
    binary = tmp_path / "pairs.txt"
    binary.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ValueError, match=r"^read_lfw_pairs\(\): cannot read '.*pairs.txt'"):
        datasets.read_lfw_pairs(binary)
    with pytest.raises(ValueError, match=r"^lfw_image_path\(\): number must be >= 1, got -1"):
        datasets.lfw_image_path(tmp_path, "A", -1)
    for name in ("../../etc", "", "..", "a/b"):
        with pytest.raises(ValueError, match=r"^lfw_image_path\(\): name must be a person's"):
            datasets.lfw_image_path(tmp_path, name, 1)
    assert (
        datasets.lfw_image_path(tmp_path, "A_B", np.int64(3)) == tmp_path / "A_B" / "A_B_0003.jpg"
    )


def test_load_images_refuses_a_lone_path_and_sizes_no_memory_holds(tmp_path):
    # A str was read one character at a time ("cannot read image '/'"); size=2**40 was
    # Pillow's OverflowError and size=(2**20, 2**20) resized for minutes.
    _tree(tmp_path)
    path = next(tmp_path.rglob("*.png"))
    with pytest.raises(
        TypeError, match=r"^load_images\(\): paths must be a sequence of paths, got str"
    ):
        datasets.load_images(str(path))
    with pytest.raises(ValueError, match=r"^load_images\(\): size sides must be <= 2147483647"):
        datasets.load_images([path], size=2**40)
    with pytest.raises(
        MemoryError, match=r"^load_images\(\): 1 images of 1048576 x 1048576 x 3 uint8"
    ):
        datasets.load_images([path], size=(2**20, 2**20))
    with pytest.raises(MemoryError, match=r"^load_images\(\): 6 images of 1048576 x 1048576"):
        datasets.image_folder(tmp_path, size=2**20)
