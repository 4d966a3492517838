"""``python -m onespike``: the command line (:mod:`onespike.apps.cli`)."""

from onespike.apps.cli import main

if __name__ == "__main__":
    main()
