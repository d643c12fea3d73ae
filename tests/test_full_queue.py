"The background queue's command line: `--only KEY=VALUE` filters (values read as YAML), bad input is a clear error."
import importlib.util, subprocess, sys
from pathlib import Path

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
