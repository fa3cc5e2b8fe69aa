"""The checked-in generated code matches protos/, and every proto element is documented."""

from __future__ import annotations

import re
from pathlib import Path

from clipsearch import protogen


def test_generated_code_is_current(tmp_path: Path) -> None:
    protogen.generate(tmp_path)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    assert generated, "protoc produced nothing"
    for rel in generated:
        checked_in = protogen.ROOT / rel
        assert checked_in.exists(), f"{rel} is missing: run `make proto`"
        assert checked_in.read_text() == (tmp_path / rel).read_text(), f"{rel} is stale: run `make proto`"


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
