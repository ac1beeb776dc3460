from mldesk.cli import main

raise SystemExit(main())
