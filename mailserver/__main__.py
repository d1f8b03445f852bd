import sys

from mailserver.cli import main

sys.exit(main())
