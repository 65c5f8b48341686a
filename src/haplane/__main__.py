import sys

from haplane.cli import main

sys.exit(main())
