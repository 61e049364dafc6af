"""The fuzzer's short run (tests/fuzz: a seeded grammar of hostile arguments to every public
entry point, each batch in its own process): no crash, no hang, and every failure a ValueError,
TypeError or MemoryError. The long run for release checks: python -m tests.fuzz --n 20000."""

import os

from fuzz.runner import run  # tests/ is on the path (pytest puts it there, beside conftest.py)

CASES = int(os.environ.get("SEGFAST_FUZZ_CASES", "240"))


def test_short_fuzz_run_finds_no_crash_hang_or_stray_exception():
    report = run(range(CASES), batch=80)
    print(report.summary())
    assert not report.crashes, report.crashes
    assert not report.hangs, report.hangs
    assert not report.unexpected, report.unexpected
    assert report.named_share >= 0.9, report.unnamed
