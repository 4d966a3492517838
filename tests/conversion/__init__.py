"""Tests of onespike.conversion."""
