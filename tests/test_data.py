"""Data: image folders with labels, arrays, a deterministic split, streaming, and bad samples."""
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from deploytool.config import IMAGENET, Color, Layout, Preprocess
from deploytool.data import split
from deploytool.data.images import load_image
from deploytool.data.sources import open_dataset
from deploytool.errors import DataError

GRAY = Preprocess(color=Color.L, mean=(0.5,), std=(0.5,))


def open_(path, preprocess=GRAY, names=("x",)):
    return open_dataset(str(path), base_dir=path.parent, preprocess=preprocess, input_names=names)


def test_image_folder_gives_labels_from_subfolders(digit_images):
    dataset = open_(digit_images)
    assert len(dataset) == 899
    assert dataset.labels == tuple(str(d) for d in range(10))
    ref = dataset.refs[0]
    assert dataset.labels[ref.label] == ref.key.split("/")[0]


def test_split_is_deterministic_disjoint_and_stable_when_files_are_added(digit_images):
    dataset = open_(digit_images)
    first = split(dataset, holdout=0.2, holdout_min=8, calib_limit=None)
    again = split(open_(digit_images), holdout=0.2, holdout_min=8, calib_limit=None)
    calib_keys = {r.key for r in first.calibration.refs}
    held_keys = {r.key for r in first.held_out.refs}
    assert calib_keys.isdisjoint(held_keys)
    assert len(calib_keys) + len(held_keys) == 899
    assert 0.15 < len(held_keys) / 899 < 0.25
    assert held_keys == {r.key for r in again.held_out.refs}
    fewer = split(dataset.subset(dataset.refs[:-50]), holdout=0.2, holdout_min=8, calib_limit=None)
    remaining = {r.key for r in dataset.refs[:-50]}
    assert {r.key for r in fewer.held_out.refs} == held_keys & remaining


def test_holdout_floor_and_calib_limit(digit_images):
    small = open_(digit_images).subset(open_(digit_images).refs[:20])
    parts = split(small, holdout=0.05, holdout_min=8, calib_limit=5)
    assert len(parts.held_out) == 8
    assert len(parts.calibration) == 5


def test_samples_are_loaded_lazily(digit_images):
    dataset = open_(digit_images)
    loads = []
    original = dataset.load_one
    dataset.load_one = lambda ref: loads.append(ref.key) or original(ref)
    batch = next(dataset.batches(4))
    assert batch[1][0].shape == (4, 1, 8, 8)
    assert len(loads) == 4


def test_image_preprocessing_matches_torchvision_conventions(tmp_path):
    pixels = np.arange(40 * 60 * 3, dtype=np.uint8).reshape(40, 60, 3)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    array = load_image(tmp_path / "a.png", Preprocess(resize=20, center_crop=(16, 16), mean=(0.5, 0.5, 0.5),
                                                      std=(0.25, 0.25, 0.25)))
    assert array.shape == (3, 16, 16)
    expected = np.asarray(Image.fromarray(pixels).resize((30, 20), Image.BILINEAR), np.float32)[2:18, 7:23]
    np.testing.assert_allclose(array, ((expected / 255 - 0.5) / 0.25).transpose(2, 0, 1), atol=1e-6)
    nhwc = load_image(tmp_path / "a.png", Preprocess(layout=Layout.NHWC, color=Color.BGR))
    np.testing.assert_allclose(nhwc[..., 0], pixels[..., 2] / 255, atol=1e-6)


def test_corrupt_image_is_skipped_with_a_warning_naming_it(tmp_path, caplog):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f"ok{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    with caplog.at_level(logging.WARNING, logger="deploytool"):
        keys = [ref.key for ref, _ in open_(folder).samples()]
    assert keys == ["ok0.png", "ok1.png", "ok2.png"]
    assert "broken.png" in caplog.text and "not a readable image" in caplog.text


def test_all_images_corrupt_is_an_error(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        (folder / f"bad{i}.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="None of the 3 samples"):
        list(open_(folder).samples())


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "holds no images"),
    (lambda p: p.write_text("x"), "unsupported data file type"),
])
def test_missing_empty_or_unsupported_calibration_data(tmp_path, make, message):
    path = tmp_path / ("data.csv" if "unsupported" in message else "data")
    make(path)
    with pytest.raises(DataError, match=message):
        open_(path)


def test_npy_npz_and_pt_samples(tmp_path):
    stacked = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    np.save(tmp_path / "a.npy", stacked)
    assert [s[0].tolist() for _, s in open_(tmp_path / "a.npy").samples()] == stacked.tolist()
    np.savez(tmp_path / "b.npz", ids=np.zeros((4, 6), np.int64), mask=np.ones((4, 6), np.int64))
    sample = next(open_(tmp_path / "b.npz", names=("ids", "mask")).samples())[1]
    assert [a.shape for a in sample] == [(6,), (6,)] and sample[1].sum() == 6
    torch.save([{"ids": torch.ones(6, dtype=torch.long), "mask": torch.zeros(6, dtype=torch.long)}] * 2,
               tmp_path / "c.pt")
    assert len(open_(tmp_path / "c.pt", names=("ids", "mask"))) == 2
    torch.save(torch.ones(7, 2), tmp_path / "d.pt")
    assert len(open_(tmp_path / "d.pt")) == 7


def test_npz_names_must_match_forward_arguments(tmp_path):
    np.savez(tmp_path / "b.npz", input_ids=np.zeros((4, 6)), attention=np.ones((4, 6)))
    with pytest.raises(DataError, match=r"model's inputs are \['ids', 'mask'\]"):
        open_(tmp_path / "b.npz", names=("ids", "mask"))


def test_nan_in_calibration_arrays_is_refused(tmp_path):
    values = np.ones((3, 4), np.float32)
    values[1, 2] = np.nan
    np.save(tmp_path / "a.npy", values)
    with pytest.raises(DataError, match="a.npy#1: input 'x' contains NaN or Inf"):
        list(open_(tmp_path / "a.npy").samples())


def test_images_of_different_sizes_without_resize_name_both_files(tmp_path):
    for name, size in (("a.png", (8, 8)), ("b.png", (9, 8))):
        Image.fromarray(np.zeros(size, np.uint8)).save(tmp_path / name)
    dataset = open_dataset(".", base_dir=tmp_path, preprocess=GRAY, input_names=("x",))
    with pytest.raises(DataError, match="a.png gives .* but b.png gives"):
        list(dataset.batches(2))


def test_random_data_must_be_asked_for_and_is_marked(tmp_path):
    from deploytool.config import InputSpec

    dataset = open_dataset("random", base_dir=tmp_path, preprocess=IMAGENET, input_names=("x",),
                           inputs=(InputSpec("x", (1, 3, 4, 4)),))
    assert dataset.is_random and "unverified" in dataset.description


def _digit_folder(tmp_path, digit_images, count: int):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for path in sorted(digit_images.rglob("*.png"))[:count]:
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def test_unreadable_images_are_left_out_of_every_count_and_named(tmp_path, digit_images, caplog):
    folder = _digit_folder(tmp_path, digit_images, 40)
    (folder / "zz_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (folder / "zz_fake.jpg").write_bytes(b"not a jpeg")
    with caplog.at_level(logging.WARNING, logger="deploytool"):
        parts = split(open_(folder), holdout=0.2, holdout_min=8, calib_limit=None)
    assert len(parts.calibration) + len(parts.held_out) == 40  # the decoded samples, not the 42 files
    assert parts.unreadable == ("zz_bad.png", "zz_fake.jpg")
    assert len(parts.held_out) >= 8, "an unreadable held-out file is replaced, not just dropped"
    assert sum(1 for _ in parts.calibration.samples()) == len(parts.calibration)
    assert sum(1 for _ in parts.held_out.samples()) == len(parts.held_out)
    assert "skipping zz_bad.png: not a readable image" in caplog.text and "zz_fake.jpg" in caplog.text


def test_too_few_readable_samples_names_the_unreadable_files(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(11):
        (folder / f"notes{i}.txt").write_text("text")
    (folder / "photo.jpg").write_bytes(b"text saved as .jpg")
    with pytest.raises(DataError, match=r"None of the 1 samples .* could be read.*photo.jpg: not a readable image"):
        split(open_(folder), holdout=0.2, holdout_min=8, calib_limit=None)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "ok.png")
    with pytest.raises(DataError, match=r"Only 1 of the 2 samples .* Unreadable: photo.jpg"):
        split(open_(folder), holdout=0.2, holdout_min=8, calib_limit=None)


def test_split_counts_what_calib_limit_leaves_unused(digit_images):
    parts = split(open_(digit_images), holdout=0.5, holdout_min=8, calib_limit=256)
    assert len(parts.calibration) == 256
    assert parts.unused == 899 - 256 - len(parts.held_out) > 0


def test_tiny_data_is_too_little_for_a_verdict_and_says_so(tmp_path, digit_images):
    from deploytool.data import held_out_shortfall
    from deploytool.quantize.sufficiency import sample_warnings

    parts = split(open_(_digit_folder(tmp_path, digit_images, 3)), holdout=0.2, holdout_min=8, calib_limit=None)
    assert len(parts.held_out) + len(parts.calibration) == 3
    warnings = sample_warnings(parts, holdout_min=8)
    assert warnings[0].startswith(f"only {len(parts.held_out)} held-out sample")
    assert "needs at least 8 (data.holdout_min)" in warnings[0] and "16 or more" in warnings[0]
    assert "calibrating on only" in warnings[1]
    assert held_out_shortfall(1, 8) == "only 1 held-out sample; a parity verdict needs at least 8 (data.holdout_min)"
    assert held_out_shortfall(8, 8) is None
    enough = split(open_(digit_images), holdout=0.2, holdout_min=8, calib_limit=None)
    assert sample_warnings(enough, holdout_min=8) == []
