"""Runs a gtest binary with OPENLM_REFERENCE_PYTHON set to this interpreter, so that the Python
reference scripts those tests write (tests/common/test_util.h: run_python) run on this torch instead
of Debian's /usr/bin/python3. Skips (exit 77) when this interpreter has no torch.
Usage: PYTHON run_reference_gtest.py GTEST_BINARY [gtest args...]"""
import os
import sys

try:
    import torch
except Exception as e:
    print("SKIP: torch not importable with %s: %s" % (sys.executable, e), flush=True)
    sys.exit(77)
print("reference python: %s (torch %s)" % (sys.executable, torch.__version__), flush=True)
os.environ["OPENLM_REFERENCE_PYTHON"] = sys.executable
os.execv(sys.argv[1], sys.argv[1:])
