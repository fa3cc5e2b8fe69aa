"""python -m bench: the whole benchmark suite (see bench.run)."""

from bench.run import main

raise SystemExit(main())
