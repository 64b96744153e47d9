"""Pillow peer of the thumbnail benchmark: one file, four renditions, single-threaded.

    python pillow_bench.py typical|fastest FILE ITERATIONS

typical: open, orient and resize the full image once per rendition.
fastest: `draft` (JPEG DCT scaling) to the largest rendition, orient, resize, then the others from it.
"""
import io
import json
import os
import resource
import sys
import time

from PIL import Image, ImageOps, __version__

WIDTHS = [160, 320, 640, 1280]
QUALITY = 80


def has_alpha(im):
    if im.mode not in ("RGBA", "LA", "PA") and "transparency" not in im.info:
        return False
    return im.convert("RGBA").getextrema()[3][0] < 255


def size_for(im, width):
    width = min(width, im.width)
    return width, max(1, round(im.height * width / im.width))


def save(im, alpha):
    out = io.BytesIO()
    if alpha:
        im.save(out, "PNG")
    else:
        im.save(out, "JPEG", quality=QUALITY)
    return {"width": im.width, "height": im.height, "bytes": out.tell(), "format": "png" if alpha else "jpg"}


def prepared(data, alpha, draft_width=None):
    im = Image.open(io.BytesIO(data))
    if draft_width is not None and im.format == "JPEG":
        w, h = im.size
        im.draft("RGB", (draft_width, max(1, round(h * draft_width / w))))
    im = ImageOps.exif_transpose(im)
    return im.convert("RGBA" if alpha else "RGB")


def typical(data, alpha):
    outputs = []
    for width in WIDTHS:
        im = prepared(data, alpha)
        outputs.append(save(im.resize(size_for(im, width), Image.LANCZOS), alpha))
    return outputs


def fastest(data, alpha):
    im = prepared(data, alpha, draft_width=WIDTHS[-1])
    largest = im.resize(size_for(im, WIDTHS[-1]), Image.LANCZOS) if im.width > WIDTHS[-1] else im
    outputs = []
    for width in WIDTHS:
        rendition = largest if width >= largest.width else largest.resize(size_for(largest, width), Image.LANCZOS)
        outputs.append(save(rendition, alpha))
    return outputs


def main():
    mode, path = sys.argv[1], sys.argv[2]
    iterations = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    run = {"typical": typical, "fastest": fastest}[mode]
    with open(path, "rb") as f:
        data = f.read()
    alpha = has_alpha(Image.open(io.BytesIO(data)))
    outputs = run(data, alpha)
    times = []
    cpu_times = []
    for _ in range(iterations):
        started, cpu_started = time.perf_counter(), time.process_time()
        run(data, alpha)
        times.append((time.perf_counter() - started) * 1000)
        cpu_times.append((time.process_time() - cpu_started) * 1000)
    print(json.dumps({
        "tool": "pillow",
        "mode": mode,
        "version": __version__,
        "file": os.path.basename(path),
        "times_ms": times,
        "cpu_ms": cpu_times,
        "renditions": outputs,
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }))


if __name__ == "__main__":
    main()
