"""Near-duplicate photos: Hamming distances of perceptual hashes between copies and between similar photos."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from bench import common
from client.ingest.phash import distance, image_hash
from search_service.duplicates import DEFAULT_MAX_DISTANCE

SIZE = (1024, 768)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def crop(image: Image.Image, share: float) -> Image.Image:
    w, h = image.size
    dx, dy = round(w * share), round(h * share)
    return image.crop((dx, dy, w - dx, h - dy))


def shifted(image: Image.Image, share: float) -> Image.Image:
    """Another framing of the same scene: the window moved right by `share` of the width."""
    w, h = image.size
    dx = round(w * share)
    wider = image.resize((w + dx, h))
    return wider.crop((dx, 0, w + dx, h))


def with_object(image: Image.Image, rng: np.random.Generator, share: float) -> Image.Image:
    """The same scene with one more object covering about `share` of the picture (a burst shot)."""
    copy = image.copy()
    w, h = copy.size
    side_w, side_h = round(w * share**0.5), round(h * share**0.5)
    x, y = int(rng.integers(0, w - side_w)), int(rng.integers(0, h - side_h))
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    ImageDraw.Draw(copy).ellipse((x, y, x + side_w, y + side_h), fill=colour)
    return copy


# What a copy of a photo is: the same picture resized or re-encoded.
COPIES: dict[str, Callable[[Image.Image], bytes]] = {
    "resized 50% (JPEG q=90)": lambda im: encode(im.resize((im.width // 2, im.height // 2)), "JPEG", quality=90),
    "re-encoded JPEG q=60": lambda im: encode(im, "JPEG", quality=60),
    "re-encoded JPEG q=95": lambda im: encode(im, "JPEG", quality=95),
    "PNG to JPEG q=85": lambda im: encode(im, "JPEG", quality=85),
    "JPEG q=85 to PNG": lambda im: encode(decoded(encode(im, "JPEG", quality=85)), "PNG"),
    "resized 25% and JPEG q=60": lambda im: encode(im.resize((im.width // 4, im.height // 4)), "JPEG", quality=60),
    "cropped 2% each side": lambda im: encode(crop(im, 0.02), "JPEG", quality=90),
    "cropped 5% each side": lambda im: encode(crop(im, 0.05), "JPEG", quality=90),
}


def similar(rng: np.random.Generator) -> dict[str, Callable[[Image.Image], bytes]]:
    """Distinct photos that look alike: the same scene reframed, or with something added."""
    return {
        "an object over 2% of it": lambda im: encode(with_object(im, rng, 0.02), "JPEG", quality=90),
        "an object over 8% of it": lambda im: encode(with_object(im, rng, 0.08), "JPEG", quality=90),
        "reframed 10% to the side": lambda im: encode(shifted(im, 0.10), "JPEG", quality=90),
        "reframed 25% to the side": lambda im: encode(shifted(im, 0.25), "JPEG", quality=90),
    }


def figures(count: int, seed: int = 3) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    originals = [common.with_noise(common.scene(rng, *SIZE), rng, 3.0) for _ in range(count)]
    hashes = [image_hash(encode(im, "PNG")) for im in originals]
    assert all(h is not None for h in hashes)
    base = [h for h in hashes if h is not None]
    rows: dict[str, dict[str, Any]] = {}

    def measure(kind: str, name: str, make: Callable[[Image.Image], bytes]) -> None:
        found = [image_hash(make(im)) for im in originals]
        d = [distance(b, h) for b, h in zip(base, found, strict=True) if h is not None]
        rows[name] = {"kind": kind, **_summary(d)}

    for name, make in COPIES.items():
        measure("copy", name, make)
    for name, make in similar(rng).items():
        measure("similar", name, make)
    unrelated = [distance(base[i], base[j]) for i in range(count) for j in range(i + 1, count)]
    rows["unrelated generated photos"] = {"kind": "similar", **_summary(unrelated)}
    return {"photos": count, "threshold": DEFAULT_MAX_DISTANCE, "rows": rows}


def _summary(d: Sequence[int]) -> dict[str, Any]:
    t = DEFAULT_MAX_DISTANCE
    return {
        "pairs": len(d),
        "min": min(d),
        "p50": float(np.percentile(d, 50)),
        "max": max(d),
        "within_threshold": sum(x <= t for x in d),
        "histogram": np.bincount(d, minlength=33)[:33].tolist(),
    }


def table(results: dict[str, Any]) -> str:
    t = results["threshold"]
    rows = [("pair", "kind", "min", "p50", "max", f"<= {t} (merged)")]
    for name, r in results["rows"].items():
        rows.append((name, r["kind"], r["min"], r["p50"], r["max"], f"{r['within_threshold']} of {r['pairs']}"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.duplicates",
        description="Hamming distances of 64-bit perceptual hashes between a generated photo and its copies "
        "(resized, re-encoded, cropped) and between it and distinct photos that look alike, against the "
        "search service's default threshold for near-duplicates.",
    )
    parser.add_argument("--photos", type=int, default=200, metavar="N", help="generated photos (default 200)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write every figure as JSON to OUT")
    args = parser.parse_args(argv)
    results = figures(args.photos)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
