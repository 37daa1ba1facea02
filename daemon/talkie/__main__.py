from talkie.cli import main

raise SystemExit(main())
