"""Every citation in the repository resolves inside it: "fact N" to docs/facts.md, no path outside."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FACTS = ROOT / "docs" / "facts.md"
# "fact 33", "facts 27, 15", "facts 36-38", "facts 27 and 15"
CITATION = re.compile(r"\bfacts? (\d+(?:\s*(?:,|-|and|/)\s*\d+)*)")


def tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"not a git checkout ({e})")
    files = []
    for name in out.splitlines():
        path = ROOT / name
        if path.suffix in {".py", ".md", ".yaml", ".yml", ".smk", ".csv", ".rst", ".sh", ".txt", ".toml"} \
                or path.name in {"Snakefile", "run"}:
            files.append(path)
    return files


def fact_numbers() -> set[int]:
    return {int(m) for m in re.findall(r"^(\d+)\. ", FACTS.read_text(), flags=re.M)}


def cited(text: str) -> set[int]:
    numbers = set()
    for group in CITATION.findall(text):
        parts = [int(n) for n in re.findall(r"\d+", group)]
        if "-" in group and len(parts) == 2:
            parts = list(range(parts[0], parts[1] + 1))
        numbers.update(parts)
    return numbers


def test_the_citation_pattern_reads_lists_and_ranges():
    assert cited("as fact 33 says; facts 27, 15 and facts 36-38; facts 14 and 36") == {33, 27, 15, 36, 37, 38, 14}


def test_every_cited_fact_is_on_the_facts_page():
    known = fact_numbers()
    assert set(range(1, 48)) <= known, "docs/facts.md lost a numbered fact"
    missing = {}
    for path in tracked_text_files():
        if path == FACTS:
            continue
        unknown = cited(path.read_text(errors="replace")) - known
        if unknown:
            missing[str(path.relative_to(ROOT))] = sorted(unknown)
    assert not missing, f"facts cited but not in docs/facts.md: {missing}"


# Paths of the machine this project was developed on, which a user of the repository does not have.
OUTSIDE = re.compile(r"(/work/|\.\./shared|shared/reference|shared/data|ipa-facts\.md)")


def test_no_file_cites_a_path_outside_the_repository():
    offenders = []
    for path in tracked_text_files():
        if path == Path(__file__):
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not offenders, "\n".join(offenders)
