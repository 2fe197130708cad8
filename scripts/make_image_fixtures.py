#!/usr/bin/env python3
"""Generate the small image files the HazeIO image-codec tests decode.

Haze has no JPEG encoder, so the JPEG inputs are written here by PIL, together with PIL's
own decode of each one stored losslessly as PNG (`<name>.expected.png`); the Swift test
decodes the JPEG with libjpeg and compares with PIL's pixels (within ±2 per channel, as
IDCT implementations may differ). PNG variants that Haze's own PNG writer never produces
(palette, alpha, 16-bit) are written here too, with the expected 8-bit gray/RGB pixels.
CI has no Python, so the generated files are committed (each well under 5 KB); re-run this
script only when a case is added or changed.

Run from the repository root (/work/main):

    $HOME/haze-ref-venv/bin/python scripts/make_image_fixtures.py

Files written into Tests/HazeIOTests/Fixtures/ (all deterministic):
- gray.jpg, rgb.jpg (+ .expected.png): 20×14 smooth patterns, quality 90; rgb.jpg with
  4:2:0 chroma subsampling, the common case.
- truncated.jpg: the first 60% of rgb.jpg's bytes.
- rgb.resized9.png: PIL's bilinear resize of rgb.expected.png to a shorter side of 9,
  center-cropped to 9×9 (torchvision's Resize(9) + CenterCrop(9) arithmetic).
- cmyk.jpg: a CMYK JPEG, which Haze refuses.
- palette.png, rgba.png, gray_alpha.png, gray16.png (+ .expected.png): the expected
  pixels drop the alpha channel (PIL's convert("RGB") / convert("L")) and scale 16 bits to
  8 as round(v · 255 / 65535).
"""
import argparse
import io
import math
import os
import struct

from PIL import Image

W, H = 20, 14


def rgb_pixel(x, y):
    r = int(127.5 + 127.5 * math.sin(x / 3.0))
    g = int(255 * y / (H - 1))
    b = (x * 13 + y * 7) % 256 if (x // 5 + y // 5) % 2 else 40
    return r, g, b


def gray_pixel(x, y):
    return int(127.5 + 120 * math.sin(x / 4.0) * math.cos(y / 3.0))


def save_png(image, path):
    image.save(path, format="PNG", optimize=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", default="Tests/HazeIOTests/Fixtures")
    out = parser.parse_args().out_dir
    os.makedirs(out, exist_ok=True)

    def path(name):
        return os.path.join(out, name)

    rgb = Image.new("RGB", (W, H))
    rgb.putdata([rgb_pixel(x, y) for y in range(H) for x in range(W)])
    gray = Image.new("L", (W, H))
    gray.putdata([gray_pixel(x, y) for y in range(H) for x in range(W)])

    # JPEGs and PIL's decode of them.
    for name, image, options in [("gray", gray, {}), ("rgb", rgb, {"subsampling": 2})]:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90, **options)
        data = buffer.getvalue()
        with open(path(f"{name}.jpg"), "wb") as f:
            f.write(data)
        decoded = Image.open(io.BytesIO(data))
        decoded.load()
        assert decoded.mode == image.mode, decoded.mode
        save_png(decoded, path(f"{name}.expected.png"))
        if name == "rgb":
            with open(path("truncated.jpg"), "wb") as f:
                f.write(data[: len(data) * 6 // 10])
    # PIL's bilinear resize of rgb.jpg's decode, shorter side to 9 (20×14 → 12×9, the
    # longer side truncated as torchvision's Resize), then the central 9×9 (left offset
    # round((12 − 9) / 2) = 2, torchvision's CenterCrop).
    decoded_rgb = Image.open(path("rgb.expected.png")).convert("RGB")
    resized = decoded_rgb.resize((int(9 * W / H), 9), Image.Resampling.BILINEAR)
    left = round((resized.width - 9) / 2)
    save_png(resized.crop((left, 0, left + 9, 9)), path("rgb.resized9.png"))
    rgb.convert("CMYK").save(path("cmyk.jpg"), format="JPEG", quality=90)

    # PNG variants that need conversion.
    palette = rgb.quantize(colors=16, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    save_png(palette, path("palette.png"))
    save_png(palette.convert("RGB"), path("palette.expected.png"))

    rgba = rgb.copy()
    rgba.putalpha(gray)  # varying alpha, including low values
    save_png(rgba, path("rgba.png"))
    save_png(rgba.convert("RGB"), path("rgba.expected.png"))

    gray_alpha = Image.merge("LA", (gray, rgb.getchannel("R")))
    save_png(gray_alpha, path("gray_alpha.png"))
    save_png(gray_alpha.convert("L"), path("gray_alpha.expected.png"))

    values16 = [(x * 3331 + y * 4099) % 65536 for y in range(H) for x in range(W)]
    gray16 = Image.new("I;16", (W, H))
    gray16.putdata(values16)
    save_png(gray16, path("gray16.png"))
    check = Image.open(path("gray16.png"))
    assert check.mode == "I;16", check.mode
    assert check.tobytes() == struct.pack(f"<{W * H}H", *values16)
    expected16 = Image.new("L", (W, H))
    expected16.putdata([(v * 255 + 32767) // 65535 for v in values16])
    save_png(expected16, path("gray16.expected.png"))

    for name in sorted(os.listdir(out)):
        size = os.path.getsize(path(name))
        assert size < 5000, f"{name} is {size} bytes"
        print(f"{name}: {size} bytes")


if __name__ == "__main__":
    main()
