import sys

from realtime_app.cli import main

sys.exit(main())
