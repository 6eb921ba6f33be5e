"""``python -m hftsig`` is the ``hftsig`` command."""
from hftsig.app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
