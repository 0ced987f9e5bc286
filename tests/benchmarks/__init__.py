"""Benchmarks: standalone scripts that print figures measured side by side, never assert timings."""
