"""``python -m cairnrl.cli``: the same as the ``cairnrl`` console script."""

from cairnrl.cli import main

raise SystemExit(main())
