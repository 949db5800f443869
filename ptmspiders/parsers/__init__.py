"""Pure parsers: hub bytes or dicts in, items out. No engine, no I/O: tested on fixtures alone."""
