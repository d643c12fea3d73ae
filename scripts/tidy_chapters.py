"""Normalise book chapter notebooks: no outputs or execution counts, a plain python3 kernelspec, no authoring metadata.
Run after editing a chapter: `.venv/bin/python scripts/tidy_chapters.py`."""
import json, sys
from pathlib import Path

KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def tidy(path: Path) -> bool:
    nb = json.loads(path.read_text())
    before = json.dumps(nb, sort_keys=True)
    nb["metadata"] = {"kernelspec": KERNEL, "language_info": {"name": "python"}}
    for cell in nb["cells"]:
        cell.pop("id", None)
        tags = cell.get("metadata", {}).get("tags")
        cell["metadata"] = {"tags": tags} if tags else {}
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb["nbformat"], nb["nbformat_minor"] = 4, 4
    after = json.dumps(nb, sort_keys=True)
    if after != before:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return after != before


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1] / "book" / "chapters"
    changed = [p.name for p in sorted(root.glob("*.ipynb")) if tidy(p)]
    print("tidied:", ", ".join(changed) or "nothing")
    sys.exit(0)
