#!/usr/bin/env python3
"""Runs the test_* functions of one integration test file.

usage: run.py tests/integration/test_x.py [name-filter]
Prints one line per test and a closing 'N passed, N failed'.
"""
import importlib.util
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


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
        try:
            getattr(mod, n)()
            passed += 1
            print(f"ok   {n} ({time.time() - t0:.2f}s)", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {n}", flush=True)
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed or not passed else 0)


if __name__ == "__main__":
    main()
