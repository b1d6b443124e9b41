from lcvae.cli import main

raise SystemExit(main())
