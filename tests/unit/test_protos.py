"""The checked-in generated code matches protos/, and every proto element is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clipsearch import protogen


def test_generated_code_is_current() -> None:
    stale = protogen.stale_files()
    assert not stale, f"stale or missing generated code, run `make proto`: {stale}"


def test_the_drift_check_notices_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "clipsearch" / "v1"
    copy.mkdir(parents=True)
    for path in (protogen.ROOT / "clipsearch" / "v1").glob("*.py*"):
        (copy / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(protogen, "ROOT", tmp_path)
    assert protogen.main(["--check"]) == 0
    (copy / "search_pb2.pyi").write_text((copy / "search_pb2.pyi").read_text() + "# edited by hand\n")
    assert protogen.main(["--check"]) == 1
    (copy / "embedder_pb2.py").unlink()
    assert protogen.stale_files() == ["clipsearch/v1/embedder_pb2.py", "clipsearch/v1/search_pb2.pyi"]


def test_every_service_rpc_message_and_field_has_a_comment() -> None:
    undocumented: list[str] = []
    declaration = re.compile(
        r"^\s*(service|rpc|message|enum|oneof)\s+\w+|^\s*(optional\s+|repeated\s+)?[\w.]+\s+\w+\s*=\s*\d+;"
    )
    for proto in protogen.proto_files():
        lines = proto.read_text().splitlines()
        for number, line in enumerate(lines):
            if not declaration.match(line):
                continue
            if re.match(r"^\s*\w+\s*=\s*\d+;", line):  # enum values document themselves by name
                continue
            previous = lines[number - 1].strip() if number else ""
            trailing = "//" in line
            # A field in a run of fields documented by the comment above the run counts as documented.
            block_start = number
            while (
                block_start > 0
                and declaration.match(lines[block_start - 1])
                and not re.match(r"^\s*(service|rpc|message|enum|oneof)\b", lines[block_start - 1])
            ):
                block_start -= 1
            above = lines[block_start - 1].strip() if block_start else ""
            if not (previous.startswith("//") or trailing or above.startswith("//")):
                undocumented.append(f"{proto.name}:{number + 1}: {line.strip()}")
    assert not undocumented, "undocumented proto elements:\n" + "\n".join(undocumented)
