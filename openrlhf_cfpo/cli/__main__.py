import sys

from openrlhf_cfpo.cli.main import main

sys.exit(main())
