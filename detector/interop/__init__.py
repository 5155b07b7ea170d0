"""Bridges to other detection libraries (imported lazily, only by the functions that need them)."""
