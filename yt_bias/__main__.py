import sys

from yt_bias.cli import main

sys.exit(main())
