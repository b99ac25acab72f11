"""The writability check before a run: refuses what cannot be written, creates nothing, and is
safe when many workers check sibling folders at once (the quality matrix does)."""
from __future__ import annotations

import threading

import pytest

from ipa.errors import ConfigError
from ipa.outputs import require_writable_dir, require_writable_file


def test_a_missing_nested_folder_passes_and_nothing_is_left_behind(tmp_path):
    target = tmp_path / "a" / "b" / "c"
    require_writable_dir(target)
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_file_system_is_refused_with_the_flag_and_path():
    with pytest.raises(ConfigError, match=r"--csv /proc/x/y cannot be written"):
        require_writable_dir("/proc/x/y", flag="--csv")


def test_a_file_in_the_way_is_named(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match="is not a folder"):
        require_writable_dir(tmp_path / "f" / "run")
    with pytest.raises(ConfigError, match="is a folder; it must name a file"):
        require_writable_file(tmp_path)


def test_concurrent_checks_of_siblings_under_a_missing_parent_all_pass(tmp_path):
    # The failure CI met: workers checking runs/<pipeline>/<workload>/<policy> while others
    # create the shared parents must not see each other's folders as errors.
    errors: list[BaseException] = []
    start = threading.Barrier(24)

    def cell(i: int) -> None:
        folder = tmp_path / "runs" / f"p{i % 2}" / "bursty" / f"policy{i}"
        start.wait()
        try:
            for _ in range(20):
                require_writable_dir(folder)
                folder.mkdir(parents=True, exist_ok=True)
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=cell, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(list((tmp_path / "runs").glob("p*/bursty/policy*"))) == 24
