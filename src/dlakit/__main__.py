import sys

from dlakit.cli import main

sys.exit(main())
