"""Resilience suites: faults, crashes, concurrency, bad input, secrecy, trust safety (issue 3)."""
