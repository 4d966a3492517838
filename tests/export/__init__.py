"""Tests of onespike.export."""
