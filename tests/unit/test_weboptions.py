"""Sizes on the command line of `clipsearch web` and `serve`: units, plain MiB, and what is refused."""

from __future__ import annotations

import argparse

import pytest

from client.weboptions import size


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4G", 4 << 30), ("4GiB", 4 << 30), ("500M", 500 << 20), ("512k", 512 << 10), ("1000B", 1000), ("20", 20 << 20)],
)
def test_sizes_read_with_their_units(text: str, expected: int) -> None:
    assert size(text) == expected


@pytest.mark.parametrize("text", ["", "0", "-1G", "4X", "G", "1e9"])
def test_sizes_that_are_not_sizes_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        size(text)
