"""onespike."""
