"""`python -m echomask` is the same as the `echomask` console script."""
from echomask.cli import main

raise SystemExit(main())
