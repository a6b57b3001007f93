"""`python -m mnistlab`: see mnistlab.cli."""

import sys

from mnistlab.cli import main

sys.exit(main())
