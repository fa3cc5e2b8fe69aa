"""`python -m client.serve`: the same as `clipsearch serve`."""

import sys

from . import main

sys.exit(main())
