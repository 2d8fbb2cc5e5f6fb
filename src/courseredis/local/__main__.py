import sys

from courseredis.local.cli import main

sys.exit(main())
