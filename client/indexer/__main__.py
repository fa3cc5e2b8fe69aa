"""`python -m client.indexer [OPTIONS]`: the same as `clipsearch watch [OPTIONS]` (how serve runs it)."""

import sys

from client.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["watch", *sys.argv[1:]]))
