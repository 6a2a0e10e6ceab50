"""Fault matrix, data stage: bad calibration data fails with exit 2 naming the file; odd-but-valid images load."""
from __future__ import annotations

import io
import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from faultkit import unprivileged
from PIL import Image

from deploytool.config import Color, Preprocess
from deploytool.data import SampleSkipped
from deploytool.data.images import load_image
from deploytool.errors import DataError


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _digit_png(value: int = 128) -> bytes:
    return _png(Image.new("L", (8, 8), value))


def _image_folder(folder: Path, files: dict[str, bytes]) -> str:
    folder.mkdir(exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder.name


def _file(folder: Path, name: str, data: bytes) -> str:
    (folder / name).write_bytes(data)
    return name


def _npy(folder: Path, array: np.ndarray, name: str = "bad.npy") -> str:
    np.save(folder / name, array)
    return name


def _rows_with(value: float, row: int) -> np.ndarray:
    array = np.random.default_rng(1).standard_normal((40, 4)).astype(np.float32)
    array[row, 2] = value
    return array


# (id, model spec, setup(folder) -> --calib value, fragments). Every case: DataError, exit 2.
CASES = [
    pytest.param("zoo:digits", lambda d: _image_folder(d / "imgs", {f"{i}.png": b"\x89PNG not really" for i in range(4)}),
                 ("could be read", "imgs"), id="corrupt-images"),
    pytest.param("zoo:digits", lambda d: _image_folder(d / "imgs", {f"{i}.png": _digit_png()[:40] for i in range(4)}),
                 ("could be read",), id="truncated-images"),
    pytest.param("zoo:digits", lambda d: _image_folder(d / "imgs", {f"{i}.png": b"" for i in range(4)}),
                 ("could be read",), id="empty-image-files"),
    pytest.param("zoo:digits", lambda d: _image_folder(d / "imgs", {}),
                 ("holds no images",), id="empty-folder"),
    pytest.param("zoo:digits", lambda d: "no-such-folder",
                 ("no-such-folder does not exist",), id="missing-folder"),
    pytest.param("zoo:digits", lambda d: _image_folder(d / "imgs", {"one.png": _digit_png()}) + "/one.png",
                 ("is a single image", "hint: Use --calib"), id="single-image-file"),
    pytest.param("model.py:build", lambda d: _file(d, "calib.csv", b"1,2,3,4\n"),
                 ("unsupported data file type '.csv'",), id="unsupported-file-type"),
    pytest.param("model.py:build", lambda d: _file(d, "empty.npy", b""),
                 ("empty.npy: not a readable .npy file",), id="empty-npy"),
    pytest.param("model.py:build", lambda d: _file(d, "cut.npy", (d / "calib.npy").read_bytes()[:200]),
                 ("cut.npy: not a readable .npy file",), id="truncated-npy"),
    pytest.param("model.py:build", lambda d: _npy(d, _rows_with(np.nan, 17)),
                 ("bad.npy#17: input 'x' contains NaN or Inf",), id="nan-in-npy"),
    pytest.param("model.py:build", lambda d: _npy(d, _rows_with(np.inf, 5)),
                 ("bad.npy#5: input 'x' contains NaN or Inf",), id="inf-in-npy"),
    pytest.param("model.py:build", lambda d: _npy(d, np.arange(160, dtype=np.int64).reshape(40, 4)),
                 ("rejects the data's input shape or dtype", "x [1, 4] int64",
                  'hint: Make the data match', '[[inputs]] with name = "x", shape = [1, 4], dtype = "float32"'),
                 id="dtype-mismatch"),
    pytest.param("model.py:build", lambda d: _npy(d, np.zeros((40,), np.float32)),
                 ("rejects the data's input shape or dtype", "x [1] float32"), id="wrong-rank"),
    pytest.param("model.py:build", lambda d: _npy(d, np.zeros((40, 4, 1), np.float32) + 0.5),
                 ("rejects the data's input shape or dtype", "x [1, 4, 1]"), id="extra-axis"),
    pytest.param("model.py:build", lambda d: _npy(d, np.zeros((1, 4), np.float32)),
                 ("holds 1 sample(s); at least 2 are needed",), id="one-sample"),
    pytest.param("model.py:two_inputs", lambda d: np.savez(d / "pair.npz", a=np.zeros((8, 4)), b=np.zeros((8, 4)))
                 or "pair.npz", ("names arrays 'a', 'b', which forward() does not take", "(missing: x, y)"),
                 id="npz-names-mismatch"),
    pytest.param("model.py:two_inputs", lambda d: np.savez(d / "pair.npz", x=np.zeros((8, 4)), y=np.zeros((6, 4)))
                 or "pair.npz", ("different sample counts",), id="npz-sample-counts-differ"),
    pytest.param("model.py:build", lambda d: _pickled_pt(d / "calib.pt") or "calib.pt",
                 ("calib.pt: not a readable tensor file", "UnpicklingError"), id="pt-data-needing-pickle"),
    # The round's fault matrix: each of these was an internal error (exit 70) or named the wrong thing.
    pytest.param("model.py:build", lambda d: np.savez(d / "obj.npz", x=np.array([{"a": 1}] * 8, dtype=object))
                 or "obj.npz", ("obj.npz: array 'x' holds Python objects", "numeric arrays only"),
                 id="npz-object-array"),
    pytest.param("model.py:build", lambda d: np.savez(d / "empty.npz") or "empty.npz",
                 ("empty.npz holds no arrays",), id="npz-no-arrays"),
    pytest.param("model.py:build", lambda d: np.savez(d / "scalar.npz", x=np.float32(3.0)) or "scalar.npz",
                 ("scalar.npz: array 'x' is a single number (0-d)",), id="npz-0d-array"),
    pytest.param("model.py:build", lambda d: _file(d, "cut.npz", _npz_bytes(d, "cut.npz")[:200]),
                 ("cut.npz: not a readable .npz file",), id="npz-truncated"),
    pytest.param("model.py:build", lambda d: _file(d, "crc.npz", _flip_payload(_npz_bytes(d, "crc.npz"))),
                 ("crc.npz: array 'x' cannot be read",), id="npz-crc-broken"),
    pytest.param("model.py:build", lambda d: _npy(d, _rows_with(3e38, 5) * np.float32([1, 1, 1, -1])),
                 ("input 'x' holds values up to 3e+38", "float32 arithmetic overflows"), id="values-near-float32-max"),
    pytest.param("model.py:build", lambda d: _npy(d, np.zeros((0, 4), np.float32)),
                 ("bad.npy holds no samples (its first axis has length 0)",), id="npy-zero-samples"),
]


def _npz_bytes(folder: Path, name: str) -> bytes:
    """A good .npz of 40 samples, as bytes (a stored, uncompressed zip)."""
    np.savez(folder / name, x=np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32))
    return (folder / name).read_bytes()


def _flip_payload(data: bytes) -> bytes:
    """One byte of the array's data changed: the zip's CRC no longer matches."""
    at = len(data) // 2
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def _pickled_pt(path: Path) -> None:
    import argparse

    import torch

    torch.save({"x": torch.zeros(8, 4), "note": argparse.Namespace(source="camera")}, path)


@pytest.mark.parametrize("model, make_calib, fragments", CASES)
def test_data_fault(fault, project, model, make_calib, fragments):
    calib = make_calib(project)
    fault("quantize", "--model", model, "--calib", calib, error=DataError, exit_code=2, fragments=fragments)
    assert not (project / "build").exists(), "bad data leaves no lock file or empty output folder behind"


def test_unreadable_npy(fault, project, shared_folder):
    """chmod 000 on the data; the run drops root privileges for the check, since root reads any file."""
    (shared_folder / "model.py").write_bytes((project / "model.py").read_bytes())
    data = shared_folder / "calib.npy"
    data.write_bytes((project / "calib.npy").read_bytes())
    data.chmod(0o000)
    with unprivileged():
        fault("quantize", "--model", "model.py:build", "--calib", "calib.npy", error=DataError, exit_code=2,
              fragments=("calib.npy: not a readable .npy file", "Permission denied"), folder=shared_folder)


def test_corrupt_images_among_good_ones_are_skipped_with_a_warning(cli, digit_images, tmp_path):
    folder = tmp_path / "imgs"
    for label in ("3", "7"):
        (folder / label).mkdir(parents=True)
        for path in sorted((digit_images / label).glob("*.png"))[:12]:
            (folder / label / path.name).write_bytes(path.read_bytes())
    (folder / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (folder / "7" / "cut.png").write_bytes(_digit_png()[:30])
    result = cli("quantize", "--model", "zoo:digits", "--calib", "imgs", "--holdout", "0.3")
    assert "skipping 3/broken.png: not a readable image" in result.stderr
    assert "skipping 7/cut.png: not a readable image" in result.stderr
    assert (tmp_path / "build" / "deploytool" / "quantized" / "program.pt2").is_file()


# --- images that look odd but are valid: they load, with the right pixel values --------------------------


GRAY = Preprocess(color=Color.L, scale=1 / 255)


def test_16_bit_png_keeps_its_top_8_bits(tmp_path):
    wide = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1024 + 300)
    (tmp_path / "wide.png").write_bytes(_png(Image.fromarray(wide)))
    assert Image.open(tmp_path / "wide.png").mode.startswith("I;16")
    array = load_image(tmp_path / "wide.png", GRAY)
    np.testing.assert_allclose(array[0] * 255, (wide >> 8).astype(np.float32), atol=0.5)


def test_cmyk_jpeg_converts_to_rgb(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "red.jpg", quality=95)  # pure red in CMYK
    array = load_image(tmp_path / "red.jpg", Preprocess())
    assert array.shape == (3, 16, 16)
    red, green, blue = (float(array[c].mean()) for c in range(3))
    assert red > 0.9 and green < 0.1 and blue < 0.1


def test_alpha_is_composited_onto_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)  # black
    rgba[:, :4, 3] = 255  # left half opaque black, right half fully transparent
    (tmp_path / "alpha.png").write_bytes(_png(Image.fromarray(rgba, mode="RGBA")))
    array = load_image(tmp_path / "alpha.png", Preprocess())
    assert np.allclose(array[:, :, :4], 0.0) and np.allclose(array[:, :, 4:], 1.0)


def test_palette_with_transparency_is_composited(tmp_path):
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 255, 0, 0])
    image.info["transparency"] = 0  # index 0 (black) is transparent
    (tmp_path / "palette.png").write_bytes(_png(image))
    assert np.allclose(load_image(tmp_path / "palette.png", Preprocess()), 1.0)


def test_huge_but_valid_image_is_resized(tmp_path):
    side = 6000  # 36 M pixels: large, and still under Pillow's decompression-bomb limit
    gradient = np.broadcast_to(np.linspace(0, 255, side, dtype=np.float32).astype(np.uint8), (side, side))
    Image.fromarray(np.ascontiguousarray(gradient), mode="L").save(tmp_path / "huge.png", compress_level=1)
    array = load_image(tmp_path / "huge.png", Preprocess(color=Color.L, resize=8, center_crop=(8, 8)))
    assert array.shape == (1, 8, 8)
    assert array[0, 0, 0] < array[0, 0, -1]  # the gradient survives the resize


def test_decompression_bomb_is_skipped_not_a_crash(tmp_path):
    """A PNG whose header claims 20000x20000 pixels: refused by size, before any pixel is decoded."""
    data = bytearray(_png(Image.new("L", (1, 1))))
    struct.pack_into(">II", data, 16, 20000, 20000)  # IHDR width and height
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    (tmp_path / "bomb.png").write_bytes(bytes(data))
    with pytest.raises(SampleSkipped, match="DecompressionBomb"):
        load_image(tmp_path / "bomb.png", Preprocess())


MARKED_FACTORY = '''
from pathlib import Path

from torch import nn


def build():
    Path(__file__).with_name("factory-ran").touch()  # stands in for minutes of building or training
    return nn.Linear(4, 3).eval()
'''


@pytest.mark.parametrize("make_calib, fragments", [
    pytest.param(lambda d: "no-such-folder", ("no-such-folder does not exist",), id="missing-folder"),
    pytest.param(lambda d: _image_folder(d / "imgs", {}), ("holds no images",), id="empty-folder"),
    pytest.param(lambda d: _image_folder(d / "notes", {"readme.txt": b"not a sample"}), ("holds no images",),
                 id="folder-without-samples"),
    pytest.param(lambda d: _file(d, "calib.csv", b"1,2,3,4\n"), ("unsupported data file type",), id="csv-file"),
])
def test_bad_calibration_data_fails_before_the_factory_runs(fault, project, make_calib, fragments):
    from deploytool import api

    (project / "marked.py").write_text(MARKED_FACTORY)
    calib = make_calib(project)
    fault("quantize", "--model", "marked.py:build", "--calib", calib, error=DataError, exit_code=2,
          fragments=fragments)
    assert not (project / "factory-ran").exists(), "the model was built before its data was checked"
    api.prepare(api.load_config(project, overrides={"model": "marked.py:build", "data.calib": "calib.npy"}))
    assert (project / "factory-ran").exists()


def test_no_calibration_data_fails_before_the_factory_runs(fault, project):
    (project / "marked.py").write_text(MARKED_FACTORY)
    fault("quantize", "--model", "marked.py:build", error=DataError, exit_code=2,
          fragments=("No calibration data given.",))
    assert not (project / "factory-ran").exists()


def test_three_images_give_no_pass_exit_1_naming_the_held_out_count(cli, digit_images, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for path in sorted(digit_images.rglob("*.png"))[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    result = cli("export", "--model", "zoo:digits", "--calib", "imgs", "--precision", "fp32", "--target", "android",
                 expect=1)
    needed = "a parity verdict needs at least 8 (data.holdout_min)"
    assert "warning: only" in result.stderr and needed in result.stderr  # said before the slow work, too
    assert "PASS" not in result.stdout.split("cross-runtime")[0]  # the summary row, where the verdict is
    assert re.search(r"FAIL \(\d held out, 8 needed\)", result.stdout)
    assert "[FAIL] only" in result.stdout and needed in result.stdout
    report = json.loads((tmp_path / "build/deploytool/android/report.json").read_text())
    assert report["passed"] is False and needed in report["artifacts"][0]["parity"]["shortfall"]


def test_a_shape_mismatch_is_not_called_a_dtype_problem(fault, project):
    """A 3-channel .npy for a 1-channel conv: the hint once proposed dtype = "int64"."""
    (project / "conv.py").write_text("import torch\n\ndef build():\n    return torch.nn.Conv2d(1, 4, 3).eval()\n")
    np.save(project / "rgb.npy", np.random.default_rng(0).standard_normal((40, 3, 8, 8)).astype(np.float32))
    result = fault("quantize", "--model", "conv.py:build", "--calib", "rgb.npy", error=DataError, exit_code=2,
                   fragments=("rejects the data's input shape", "3 channels"))
    assert "dtype" not in result.stderr.split("hint:")[1], result.stderr
