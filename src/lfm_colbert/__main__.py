import sys

from lfm_colbert.cli import main

sys.exit(main())
