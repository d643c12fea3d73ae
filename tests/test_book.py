"""The book in the quick profile: papermill executes every chapter, then Jupyter Book builds the HTML with -W."""
import json, os, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("DEEPKNET_DATA", ROOT.parent / "shared" / "data"))


@pytest.mark.slow
@pytest.mark.skipif(not (MIRROR / "mp_mtcgcnn_36k").exists(), reason="offline data mirror not present")
def test_quick_book_builds_and_every_chapter_compares_with_the_paper():
    done = subprocess.run([str(Path(sys.executable).parent / "deepknet"), "book", "--profile", "quick"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, f"deepknet book failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    html = ROOT / "book" / "_build" / "html"
    chapters = sorted(p.stem for p in (ROOT / "book" / "chapters").glob("*.ipynb"))
    for stem in chapters:
        page = html / "chapters" / f"{stem}.html"
        assert page.exists(), f"no HTML page for chapter {stem}"
        assert "Traceback" not in page.read_text(errors="replace"), f"chapter {stem} shows an error"
    # every experiment chapter wrote its comparison table, and each row has the paper's number or a reason
    tables = ROOT / "book" / "results" / "quick" / "tables"
    written = {p.stem for p in tables.glob("*.json")}
    assert {"03_crystal_system", "04_points_sweep", "05_perturbations", "06_baselines", "07_critical_points",
            "08_perovskites", "09_hyperparameters"} <= written
    for p in tables.glob("*.json"):
        for row in json.loads(p.read_text()):
            assert row["paper"] != "–" or row["reason"], f"{p.stem}: row {row['artefact']} has neither"
            assert row["ours (mean ± std)"] != "–", f"{p.stem}: row {row['artefact']} has no result of ours"
