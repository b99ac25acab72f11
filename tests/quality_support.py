"""The synthetic quality matrix, shared by test_regression.py and test_quality_properties.py:
run once per test session (40 runs, ~20-45 s on 2 cores), its run folders kept for the
invariant checks."""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from conftest import write_tiny_catalogue

from ipa.quality import CatalogueFiles, CheckResult, check

SYNTHETIC_REFERENCE = Path(__file__).resolve().parent / "reference" / "adaptation-quality-synthetic.csv"
SYNTHETIC_PIPELINES = ("tiny-video", "tiny-audio")


def tiny_catalogue_files(folder: Path) -> CatalogueFiles:
    return CatalogueFiles(*write_tiny_catalogue(folder))


@functools.lru_cache(maxsize=None)
def synthetic_matrix() -> tuple[CheckResult, CatalogueFiles]:
    """`check` of the committed synthetic reference, its run folders under a temporary folder
    removed at exit."""
    root = Path(tempfile.mkdtemp(prefix="ipa-quality-test-"))
    atexit.register(shutil.rmtree, root, True)
    files = tiny_catalogue_files(root / "catalogue")
    return check(SYNTHETIC_REFERENCE, out_root=root / "runs", files=files, workers=2), files
