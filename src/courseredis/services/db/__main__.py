import sys

from courseredis.services.db.cli import main

sys.exit(main())
