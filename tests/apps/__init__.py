"""Tests of onespike.apps."""
