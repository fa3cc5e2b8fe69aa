"""`python -m client.web`: the same as `clipsearch web`."""

import sys

from client.cli import main

raise SystemExit(main(["web", *sys.argv[1:]]))
