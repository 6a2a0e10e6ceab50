"""Write the held-out half of the digits as PNG files, one sub-folder per class: real data for the demo."""
from __future__ import annotations

import io
import sys
from pathlib import Path

from deploytool.fsutil import atomic_write_bytes


def write_digit_images(folder: Path) -> Path:
    from PIL import Image

    from model_zoo.digits.model import digits_as_pixels, split_indices

    pixels, labels = digits_as_pixels()
    _, held_out = split_indices(len(labels))
    for index in held_out:
        target = folder / str(labels[index]) / f"digit_{index:04d}.png"
        if not target.exists():  # atomic: an interrupted run never leaves a truncated PNG that is then kept
            buffer = io.BytesIO()
            Image.fromarray(pixels[index], mode="L").save(buffer, "PNG")
            atomic_write_bytes(target, buffer.getvalue())
    return folder


if __name__ == "__main__":
    out = write_digit_images(Path(sys.argv[1] if len(sys.argv) > 1 else "digits"))
    # `quantize` then says how it uses them: the held-out share, at most data.calib_limit to calibrate, the rest unused.
    print(f"wrote {sum(1 for _ in out.rglob('*.png'))} digit images (never used in training) to {out}; quantize "
          "holds out a share for parity (--holdout) and calibrates on at most --calib-limit (256) of the rest",
          file=sys.stderr)
