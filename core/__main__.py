"""`python -m modelreg`: the command line."""
import sys

from modelreg.cli.main import main

sys.exit(main())
