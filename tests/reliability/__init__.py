"""Reliability tests, bounded so `make test` stays fast: disk faults at every position of a
collection's files and kill -9 mid-write (the search service's storage), overload (the servers).
RELIABILITY.md at the repository root lists each scenario, its counts and its command.
"""
