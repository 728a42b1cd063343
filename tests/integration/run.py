#!/usr/bin/env python3
"""Runs the test_* functions of one integration test file.

usage: run.py tests/integration/test_x.py [name-filter]
Prints one line per test and a closing 'N passed, N failed'. Under valgrind
(MKTD_VALGRIND=1, see harness.py) a test whose mktd processes left a valgrind
report fails with the report.
"""
import importlib.util
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # the same module the test files import


def print_valgrind(reports):
    for argv, text in reports:
        print(f"valgrind report for {' '.join(argv)}:\n{text.rstrip()}", flush=True)


def main():
    path = sys.argv[1]
    flt = sys.argv[2] if len(sys.argv) > 2 else ""
    spec = importlib.util.spec_from_file_location("t", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    names = [n for n in dir(mod) if n.startswith("test_") and callable(getattr(mod, n)) and flt in n]
    names.sort(key=lambda n: getattr(mod, n).__code__.co_firstlineno)
    passed = failed = 0
    for n in names:
        t0 = time.time()
        error = None
        try:
            getattr(mod, n)()
        except Exception:
            error = traceback.format_exc()
        reports = harness.valgrind_reports()  # of the processes run by this test
        if not error and not reports:
            passed += 1
            print(f"ok   {n} ({time.time() - t0:.2f}s)", flush=True)
            continue
        failed += 1
        print(f"FAIL {n}", flush=True)
        if error:
            print(error, end="", file=sys.stderr, flush=True)
        print_valgrind(reports)
    reports = harness.valgrind_reports()
    if reports:
        failed += 1
        print("FAIL a process that outlived its test", flush=True)
        print_valgrind(reports)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed or not passed else 0)


if __name__ == "__main__":
    main()
