"""The `modelreg` command line: thin wrappers over the library."""
