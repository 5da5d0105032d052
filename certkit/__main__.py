import sys

from certkit.entry import main

sys.exit(main())
