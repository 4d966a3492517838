"""Tests of onespike.network."""
