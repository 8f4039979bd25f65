import sys

from metanas.cli.main import main

sys.exit(main())
