"""The fault campaign: ``python -m bench.faults [--quick]`` writes ``docs/RELIABILITY.md``."""
