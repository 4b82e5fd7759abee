"""``python -m hitsave`` and the ``hitsave`` console script: the Rust CLI."""

import sys

from hitsave import _native


def main() -> None:
    sys.exit(_native.cli_main(["hitsave", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
