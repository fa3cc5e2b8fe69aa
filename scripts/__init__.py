"""Developer scripts: the demo and the screenshot."""
