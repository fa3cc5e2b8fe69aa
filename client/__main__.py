"""`python -m client`: the clipsearch command."""

from .cli import main

raise SystemExit(main())
