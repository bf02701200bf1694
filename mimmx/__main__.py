import sys

from mimmx.cli import main

sys.exit(main())
