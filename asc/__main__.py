import sys

from asc.cli import main

sys.exit(main())
