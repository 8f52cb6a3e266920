"""python3 -m emailsession --version: the package's and the C library's versions."""

import argparse
import sys
from typing import List, Optional

from . import __version__, version


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m emailsession",
                                     description="Python binding of libemailsession.")
    parser.add_argument("--version", action="version",
                        version=f"emailsession {__version__} (libemailsession {version()})")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
