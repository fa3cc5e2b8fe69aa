"""Generated from protos/clipsearch/v1 by `make proto`; never edited by hand."""
