"""`python -m cloud.api [options]` = `pingwatch-cloud run [options]`."""

import sys

from cloud.cli import main

main(["run", *sys.argv[1:]])
