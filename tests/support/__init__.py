"""Helpers shared by the tests: loopback servers, normalisers."""
