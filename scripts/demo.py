"""The one-command demo: starts the stack, indexes sample photos and a video, searches and classifies."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "openai/clip-vit-base-patch16"
# Photos that ship inside the scikit-image wheel (no download), saved under these names.
SAMPLE_PHOTOS: dict[str, str | tuple[str, int]] = {
    "astronaut.jpg": "astronaut",
    "coffee.jpg": "coffee",
    "cat.jpg": "chelsea",
    "rocket.jpg": "rocket",
    "motorcycle_left.jpg": ("stereo_motorcycle", 0),
    "motorcycle_right.jpg": ("stereo_motorcycle", 1),
    "cameraman.png": "camera",
    "coins.png": "coins",
    "galaxies.jpg": "hubble_deep_field",
    "retina.jpg": "retina",
}
# The generated video shows these photos one after the other, each for VIDEO_SECONDS_PER_PHOTO seconds.
VIDEO_PHOTOS = ("astronaut.jpg", "cat.jpg", "rocket.jpg")
VIDEO_SECONDS_PER_PHOTO = 2
VIDEO_FPS = 10
VIDEO_SIZE = (320, 240)
TEXT_QUERY = "a cat"
IMAGE_QUERY = "cat.jpg"
CLASSIFY_PHOTO = "coffee.jpg"
LABELS = ("a cup of coffee", "a cat", "a rocket", "an astronaut", "a motorcycle")
SERVE_START_TIMEOUT = 900.0


class DemoError(Exception):
    """The demo cannot go on; the message says what to do."""


def write_sample_photos(directory: Path) -> list[Path]:
    """Saves scikit-image's bundled sample photos as JPEG/PNG files; returns their paths."""
    import numpy as np
    import skimage.data
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, source in SAMPLE_PHOTOS.items():
        if isinstance(source, str):
            loader, index = source, None
        else:
            loader, index = source
        pixels = getattr(skimage.data, loader)()
        if index is not None:
            pixels = pixels[index]
        image = Image.fromarray(np.asarray(pixels, dtype=np.uint8))
        path = directory / name
        if path.suffix == ".jpg":
            image.convert("RGB").save(path, quality=92)
        else:
            image.save(path)
        paths.append(path)
    return paths


def write_demo_video(path: Path, photos: Sequence[Path]) -> float:
    """Encodes an H.264 video that pans slowly across each photo in turn; returns its length in seconds."""
    import av
    import numpy as np
    from PIL import Image

    width, height = VIDEO_SIZE
    frames_per_photo = VIDEO_SECONDS_PER_PHOTO * VIDEO_FPS
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for photo in photos:
            with Image.open(photo) as opened:
                image = opened.convert("RGB")
            # Scaled to 25% wider than the frame, so a crop window can pan across it.
            scale = max(width * 1.25 / image.width, height / image.height)
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
            slack = image.width - width
            for step in range(frames_per_photo):
                left = round(slack * step / max(1, frames_per_photo - 1))
                top = (image.height - height) // 2
                pixels = np.asarray(image.crop((left, top, left + width, top + height)))
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return float(len(photos) * VIDEO_SECONDS_PER_PHOTO)


def clipsearch_command() -> list[str]:
    """The `clipsearch` console script next to this interpreter, or the same entry point through it."""
    script = Path(sys.executable).with_name("clipsearch")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from client.cli import main; sys.exit(main())"]


def model_help(model: str) -> str:
    """What to do when the embedder cannot load `model`."""
    if not model.startswith(("/", ".", "~")):  # a Hugging Face id rather than a directory
        why = (
            f"The CLIP model {model!r} could not be loaded (the line above says why); most likely it is "
            "not in the\nHugging Face cache and cannot be downloaded from here (no internet access)."
        )
    else:
        why = f"The CLIP model {model!r} could not be loaded (the line above says why)."
    return f"""
{why} Point CLIP_MODEL at a local checkpoint instead:

    make checkpoint                          # a small random-weight CLIP in checkpoints/tiny
    CLIP_MODEL=checkpoints/tiny make demo

or with the exact ViT-B/16 architecture (random weights, the real model's size and speed):

    make checkpoint ARCH=vit-b-16            # or: python -m embedder_service.checkpoint DIR --arch vit-b-16
    CLIP_MODEL=checkpoints/vit-b-16 make demo

A random-weight model runs every step, but its rankings mean nothing. With internet access, `make demo`
downloads {DEFAULT_MODEL} once (about 600 MB) into the Hugging Face cache."""


class Stack:
    """`clipsearch serve` running as a child process, with the addresses from its ready file."""

    def __init__(self, workdir: Path, model: str, embedders: int) -> None:
        self.log_path = workdir / "serve.log"
        self.out_path = workdir / "serve.out"
        self.ready_path = workdir / "serve-ready.json"
        # Free ports, so the demo runs beside a `clipsearch serve` on the default ports.
        self.args = [
            "serve",
            "--model",
            model,
            "--data-dir",
            str(workdir / "data"),
            "--embedder-port",
            "0",
            "--search-port",
            "0",
            "--embedders",
            str(embedders),
            "--start-timeout",
            f"{SERVE_START_TIMEOUT:.0f}",
            "--ready-file",
            str(self.ready_path),
            "--no-web",  # the demo stops when it is done: nobody would see the page
        ]
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> dict[str, str]:
        """Starts serve, waits for its ready file, shows its banner; returns the variables a client sets."""
        print(f"$ clipsearch {shlex.join(self.args)}", flush=True)
        with self.log_path.open("w") as log, self.out_path.open("w") as out:
            self.process = subprocess.Popen(
                [*clipsearch_command(), *self.args],
                stdout=out,
                stderr=log,
                text=True,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + SERVE_START_TIMEOUT + 120  # serve gives up first
        while (ready := self._ready()) is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise DemoError(self._failure())
            time.sleep(0.2)
        # serve printed its banner before it wrote the ready file.
        for line in self.out_path.read_text(errors="replace").splitlines():
            print(f"  {line}", flush=True)
        client_env: dict[str, str] = ready["client_env"]
        return client_env

    def _ready(self) -> dict[str, Any] | None:
        """serve's ready file, once this serve has written it."""
        assert self.process is not None
        try:
            ready: dict[str, Any] = json.loads(self.ready_path.read_text())
        except FileNotFoundError:
            return None
        if ready.get("version") != 1:
            raise DemoError(f"{self.ready_path}: a ready file of version {ready.get('version')}, not 1")
        return ready if ready.get("pid") == self.process.pid else None

    def _failure(self) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        fatal = [line for line in lines if line.startswith("clipsearch serve:")]
        if fatal:
            return fatal[-1]
        tail = "\n".join(f"  {line}" for line in lines[-15:])
        if self.process is not None and self.process.poll() is None:
            return f"clipsearch serve did not become ready within {SERVE_START_TIMEOUT:.0f} s; its log ends:\n{tail}"
        return f"clipsearch serve stopped; its log ends:\n{tail}"

    def stop(self, interrupted: bool = False) -> int | None:
        """Stops serve with SIGTERM; after Ctrl-C it got SIGINT from the terminal already, and a second
        signal would make it hurry (no grace), so it is only waited for."""
        if self.process is None:
            return None
        if not interrupted and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_tail(self, lines: int = 10) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def run_cli(args: Sequence[str], env: dict[str, str], shown: Sequence[str]) -> None:
    """Runs one clipsearch command, showing it as a user would type it."""
    print(f"\n$ clipsearch {shlex.join(shown)}", flush=True)
    result = subprocess.run([*clipsearch_command(), *args], env=env, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise DemoError(f"clipsearch {shlex.join(shown)} failed with exit code {result.returncode}")


def check_imports() -> None:
    missing = [name for name in ("skimage", "av", "client") if importlib.util.find_spec(name) is None]
    if missing:
        raise DemoError(
            f"cannot import {', '.join(missing)}: run the demo with `make demo`, which installs "
            "everything it needs into .venv"
        )


def demo(workdir: Path, model: str, embedders: int) -> None:
    check_imports()
    photos_dir, videos_dir = workdir / "photos", workdir / "videos"
    print(f"Writing sample photos to {photos_dir} and a short video to {videos_dir}", flush=True)
    photos = write_sample_photos(photos_dir)
    by_name = {path.name: path for path in photos}
    video = videos_dir / "slideshow.mp4"
    seconds = write_demo_video(video, [by_name[name] for name in VIDEO_PHOTOS])
    print(
        f"  {len(photos)} photos; {video.name}: {seconds:.0f} s, showing "
        f"{', '.join(VIDEO_PHOTOS)} for {VIDEO_SECONDS_PER_PHOTO} s each",
        flush=True,
    )

    print(f"\nStarting the stack with CLIP_MODEL={model}", flush=True)
    stack = Stack(workdir, model, embedders)
    interrupted = False
    try:
        addresses = stack.start()
        env = {**os.environ, **addresses, "COLUMNS": os.environ.get("COLUMNS", "160")}
        run_cli(["index", str(photos_dir), str(video)], env, ["index", "photos/", "videos/slideshow.mp4"])
        run_cli(["search", "--text", TEXT_QUERY, "--top", "5"], env, ["search", "--text", TEXT_QUERY, "--top", "5"])
        run_cli(
            ["search", "--image", str(by_name[IMAGE_QUERY]), "--top", "5"],
            env,
            ["search", "--image", f"photos/{IMAGE_QUERY}", "--top", "5"],
        )
        run_cli(
            ["classify", str(by_name[CLASSIFY_PHOTO]), "--labels", *LABELS],
            env,
            ["classify", f"photos/{CLASSIFY_PHOTO}", "--labels", *LABELS],
        )
        run_cli(["stats"], env, ["stats"])
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        print("\nStopping the stack", flush=True)
        code = stack.stop(interrupted)
        if code not in (0, None):
            print(f"clipsearch serve exited with code {code}; its log ends:\n{stack.log_tail()}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where photos, the video and the Redis data go (default: a temporary folder, removed afterwards)",
    )
    parser.add_argument("--embedders", type=int, default=1, help="embedder replicas (default 1)")
    args = parser.parse_args(argv)
    model = os.environ.get("CLIP_MODEL", "").strip() or DEFAULT_MODEL
    if Path(model).expanduser().is_dir():
        model = str(Path(model).expanduser().resolve())  # serve's children may run elsewhere
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="clipsearch-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        demo(workdir, model, args.embedders)
    except DemoError as error:
        print(f"\ndemo: {error}", file=sys.stderr)
        if str(error).startswith("clipsearch serve: embedder"):
            print(model_help(model), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: interrupted", file=sys.stderr)
        return 130
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\nDone.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
