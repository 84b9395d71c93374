import sys

from lambda_hat.cli import main

sys.exit(main())
