from collapse_hpc.cli import main

raise SystemExit(main())
