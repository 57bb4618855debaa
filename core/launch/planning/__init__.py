"""Planning a start: an entry checked and turned into the argv or daemon request that starts its backend."""
