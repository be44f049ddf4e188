import sys

from hami_mig.cli import main

sys.exit(main())
