"""Tests of onespike.analysis."""
