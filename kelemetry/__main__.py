from kelemetry import cli

raise SystemExit(cli.main())
