"""The README's commands for rerunning a chapter, run verbatim (quick profile): they must work as written."""
import os, re, shlex, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("DEEPKNET_DATA", ROOT.parent / "shared" / "data"))


def readme_commands(prefix: str) -> list[str]:
    "Lines of the README's bash blocks that start with `prefix`."
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [line.split("  #")[0].strip() for b in blocks for line in b.splitlines() if line.startswith(prefix)]


def test_the_readme_shows_papermill_commands():
    cmds = readme_commands(".venv/bin/papermill ")
    assert len(cmds) >= 2 and any(" -y " in c for c in cmds) and any(" -p tasks " in c for c in cmds)


@pytest.mark.slow
@pytest.mark.skipif(not (MIRROR / "mp_mtcgcnn_36k").exists(), reason="offline data mirror not present")
@pytest.mark.parametrize("cmd", readme_commands(".venv/bin/papermill "))
def test_readme_papermill_command_runs_verbatim(cmd, tmp_path):
    argv = shlex.split(cmd)
    argv[0] = str(Path(sys.executable).parent / "papermill")  # the venv the tests run in
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"})
    assert done.returncode == 0, done.stderr[-3000:]
    out = Path(argv[2])
    assert out.exists() and "unknown task" not in out.read_text()
