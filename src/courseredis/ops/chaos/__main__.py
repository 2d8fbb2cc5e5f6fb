from courseredis.ops.chaos.runner import main

raise SystemExit(main())
