"""Resilience suites: faults, crashes, concurrency, bad input, secrecy, trust safety."""
