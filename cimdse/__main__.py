import sys

from cimdse.cli import main

sys.exit(main())
