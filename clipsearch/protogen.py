"""Generates the Python gRPC code for protos/ (python -m clipsearch.protogen [OUT_DIR | --check])."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"


def proto_files() -> list[Path]:
    """Every .proto under protos/, sorted."""
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Writes *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for every proto into out_dir."""
    import importlib.resources

    from grpc_tools import protoc  # build-time dependency only

    include = str(importlib.resources.files("grpc_tools") / "_proto")
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))


def stale_files() -> list[str]:
    """The checked-in generated files that differ from what protoc makes of protos/ now (empty: current)."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        generate(out)
        generated = sorted(p.relative_to(out) for p in out.rglob("*.py*"))
        if not generated:
            raise RuntimeError("protoc produced nothing")
        return [
            str(rel)
            for rel in generated
            if not (ROOT / rel).exists() or (ROOT / rel).read_text() != (out / rel).read_text()
        ]


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        stale = stale_files()
        for rel in stale:
            print(f"{rel} is stale or missing: run `make proto`", file=sys.stderr)
        return 1 if stale else 0
    generate(Path(argv[0]) if argv else ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
