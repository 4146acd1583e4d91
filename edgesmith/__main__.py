from edgesmith.cli import main

raise SystemExit(main())
