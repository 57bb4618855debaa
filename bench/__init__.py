"""`make bench`: modelreg's figures side by side with their references, measured in one run."""
import sys
from pathlib import Path

# The tests' builders (tiny models, servers) import by one name, `support`, here as in the tests.
TESTS = str(Path(__file__).resolve().parents[1] / "tests")
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
