"""``python -m hftsig`` is the ``hftsig`` command."""
from hftsig.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
