import sys

from zerotouch_plugin.cli import main

sys.exit(main())
