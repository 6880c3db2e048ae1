"""``python -m gateway`` is the ``polos-gateway`` command."""

from gateway.cli import main

raise SystemExit(main())
