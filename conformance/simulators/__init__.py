"""Servers the bench runs: the reference vendor (with fault injection) and national-service doubles."""
