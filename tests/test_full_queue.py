"The background queue's command line: `--only KEY=VALUE` filters (values read as YAML), bad input is a clear error."
import importlib.util, os, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "full_queue.py"


def load_script():
    spec = importlib.util.spec_from_file_location("full_queue", SCRIPT)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_only_reads_values_as_yaml():
    kv = load_script().key_value
    assert kv("seed=0") == ("seed", 0) and kv("pooling=attention") == ("pooling", "attention")
    assert kv("dropout=0.4") == ("dropout", 0.4) and kv(" task = metallicity") == ("task", "metallicity")


def test_only_without_a_value_is_a_usage_error():
    r = subprocess.run([sys.executable, str(SCRIPT), "--only", "seed"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "--only wants KEY=VALUE, got 'seed'" in r.stderr and "Traceback" not in r.stderr


def test_until_takes_a_clock_time_or_a_duration():
    import datetime, time
    until = load_script().until
    assert abs(until("150m") - (time.time() + 9000)) < 5 and abs(until("2.5h") - (time.time() + 9000)) < 5
    later = (datetime.datetime.now() + datetime.timedelta(minutes=2)).strftime("%H:%M")
    if later > datetime.datetime.now().strftime("%H:%M"):  # not across midnight
        assert 0 < until(later) - time.time() <= 120


def test_until_refuses_nonsense_and_a_time_already_past():
    for bad, said in (("25:99", "--until wants HH:MM or a duration"), ("00:00", "that time has passed today")):
        r = subprocess.run([sys.executable, str(SCRIPT), "--until", bad], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 2 and said in r.stderr and "Traceback" not in r.stderr


MIRROR = Path(os.environ.get("DEEPKNET_DATA", ROOT.parent / "shared" / "data"))


@pytest.mark.skipif(not (MIRROR / "mp_mtcgcnn_36k").exists(), reason="offline data mirror not present")
def test_dry_run_counts_what_is_missing_without_a_traceback():
    "The dry run of the committed full plan (nothing or little left) counts what is missing, with no traceback."
    r = subprocess.run([sys.executable, str(SCRIPT), "--dry-run"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    missing = int(r.stdout.split(" of ")[0])
    assert ("estimate:" in r.stdout) == (missing > 0)  # an estimate only for jobs that are left
