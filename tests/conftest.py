"""Top-level pytest set-up shared by every test directory.

Puts the repository root on ``sys.path`` so test code can import the
helpers in ``tests/support`` as ``tests.support.<module>`` (the e2e suites
use ``tests.support.server``; the store suite ``tests.support.etcd``).
Fixtures live next to the suites that use them (e.g. tests/e2e/conftest.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
