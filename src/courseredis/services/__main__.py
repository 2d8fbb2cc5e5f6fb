from courseredis.services.main import main

raise SystemExit(main())
