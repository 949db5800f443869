import sys

from ptmspiders.cli import main

sys.exit(main())
