"""Real datasets shipped in the package, each with its checksum and licence note."""
