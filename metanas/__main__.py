import sys

from metanas.platform.cli import main

sys.exit(main())
