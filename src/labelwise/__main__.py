import sys

from labelwise.cli.main import main

sys.exit(main())
