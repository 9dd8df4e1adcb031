#!/usr/bin/env python3
"""The QEMU lab's entry (scripts/qemu-lab.sh runs it): the lab itself is the
package beside it, scripts/lab/ (see its docstring)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab.main import main

if __name__ == "__main__":
    sys.exit(main())
