"""Tests of onespike.simulation."""
