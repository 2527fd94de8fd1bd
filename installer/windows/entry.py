"""Entry point of the bundled program (PyInstaller): the ``jonot-local`` command line."""

import multiprocessing

from jonot_local.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # harmless when unused; needed if a child is ever spawned
    main()
