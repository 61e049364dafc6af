"""A seeded grammar fuzzer of segfast's public API: `python -m tests.fuzz --n 20000` (release
checks), a few hundred cases in the test suite (tests/test_fuzz.py)."""
