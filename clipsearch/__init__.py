"""clipsearch: the gRPC contract's generated code and the plumbing both services share."""
