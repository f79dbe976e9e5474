"""Sans-I/O protocol engines: bytes, source and time in; actions out."""
