"""``python -m lamina``: the ``lamina`` command line (see ``lamina.cli``)."""

from lamina.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
