"""`llamas-agent` command line."""

import argparse
import json
import sys

from .machine import gather_machine
from .sysfs import Tree


def main(argv=None):
    parser = argparse.ArgumentParser(prog="llamas-agent", description="LLaMaS guest agent")
    parser.add_argument("--root", default="/", help="read procfs/sysfs under this directory (for tests)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("machine", help="print the machine as the kernel sees it (JSON)")
    args = parser.parse_args(argv)
    if args.command == "machine":
        json.dump(gather_machine(Tree(args.root)), sys.stdout, indent=1)
        sys.stdout.write("\n")
    return 0
