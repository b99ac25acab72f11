"""Refresh the synthetic reference (tests/reference/adaptation-quality-synthetic.csv).

    python tests/reference/refresh_synthetic.py

The synthetic pipelines of tests/conftest.py (tiny-video, tiny-audio) through the same
`ipa quality refresh` the reference pipelines use: a regression gate that needs no measured
profile. Run it when a change to the adapter, optimiser, simulator or the fixture's numbers is
meant to change quality, and commit the diff.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # conftest.py, where the synthetic catalogue is written

from quality_support import SYNTHETIC_PIPELINES, SYNTHETIC_REFERENCE, write_tiny_catalogue  # noqa: E402

from ipa.cli import main  # noqa: E402

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        pipelines, variants, profiles = write_tiny_catalogue(Path(tmp))
        sys.exit(main(["quality", "refresh", "--reference", str(SYNTHETIC_REFERENCE),
                       "--pipelines", *SYNTHETIC_PIPELINES, "--pipelines-file", str(pipelines),
                       "--variants-file", str(variants), "--profiles-file", str(profiles), *sys.argv[1:]]))
