import sys

from courseredis.rehearsal.cli import main

sys.exit(main())
