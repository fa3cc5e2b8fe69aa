"""`python -m client.web`: the same as `clipsearch web`."""

from .server import main

raise SystemExit(main())
