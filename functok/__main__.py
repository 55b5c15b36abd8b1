import sys

from functok.book.cli import main

sys.exit(main())
