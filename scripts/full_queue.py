"""Compute every missing job of a profile's plan (`experiments.plan`), one at a time, in the background:

    nohup .venv/bin/python scripts/full_queue.py > full_queue.log 2>&1 &
    .venv/bin/python scripts/full_queue.py --dry-run      # what is missing, and how long it should take here
    .venv/bin/python scripts/full_queue.py --only pooling=attention   # only some jobs (e.g. on a GPU machine)
    .venv/bin/python scripts/full_queue.py --until 15:30   # or --until 150m: stop by then, carrying a training over

Each job is cached by its key under book/results/<profile>/ (a finished one is skipped) and a killed training resumes
from its checkpoint under $DEEPKNET_CACHE/runs/ (a Table IV grid search from book/results/<profile>/partial/).
Commit the JSON files as they land. With --until, a training still running at that time stops after the epoch that
would overrun it and is carried over under book/results/<profile>/partial/runs/ (ignored by git; copy it to move it): the next
run of the queue that finds it resumes it, so a run longer than a session (self-attention pooling) still finishes."""
import argparse, datetime, math, re, time

import yaml

from deepknet_lit.experiments import carried_runs, compute_left, plan, run_missing
from deepknet_lit.train import ensure_fast_malloc


def key_value(s: str) -> tuple:
    "'seed=0' -> ('seed', 0): the value read as YAML (numbers, true/false, strings)."
    if "=" not in s: raise argparse.ArgumentTypeError(f"--only wants KEY=VALUE, got {s!r}")
    k, v = s.split("=", 1)
    return k.strip(), yaml.safe_load(v)


def until(s: str) -> float:
    "'15:30' (today, local time) or a duration '150m', '2.5h' -> a time.time() deadline."
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)\s*([mh])", s.strip()):
        return time.time() + float(m[1]) * (60 if m[2] == "m" else 3600)
    try: hm = datetime.datetime.strptime(s.strip(), "%H:%M").time()
    except ValueError: raise argparse.ArgumentTypeError(f"--until wants HH:MM or a duration such as 150m or 2.5h, got {s!r}")
    t = datetime.datetime.combine(datetime.date.today(), hm).timestamp()
    if t <= time.time(): raise argparse.ArgumentTypeError(f"--until {s}: that time has passed today")
    return t


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="full"); p.add_argument("--dry-run", action="store_true")
    p.add_argument("--only", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="run only the jobs with this key = value (repeat to require several), e.g. task=metallicity")
    p.add_argument("--until", type=until, metavar="HH:MM|DURATION",
                   help="start no job after this time and stop a training by it, carrying it over to the next run")
    a = p.parse_args()
    where = dict(a.only) or None
    ensure_fast_malloc()
    if a.dry_run:
        left = compute_left(a.profile, where)
        print(f"{len(left)} of {len(plan(a.profile))} jobs missing" + (f" and matching {where}" if where else ""))
        for r in left.itertuples():
            took = "     ?" if math.isnan(r.estimate_s) else f"{r.estimate_s / 60:5.0f}"
            print(f"tier {r.tier} {took} min  {r.job}  ({r.basis})")  # what the estimate comes from
        if len(left):
            known = left.estimate_s.notna()
            print(f"estimate: {left.estimate_s[known].sum() / 3600:.1f} h for {known.sum()} jobs (from the committed runs' "
                  f"wall times, on the machines they ran on; pooling variants from benchmarks/results/pooling.json, jobs new "
                  f"to a task from their runs on the other tasks, rescaled); {(~known).sum()} jobs have no estimate yet")
        if len(carried := carried_runs(a.profile)):
            print("carried over from an earlier run (resumed, not restarted; the estimates above are for whole runs):")
            print(carried.to_string(index=False))
    else:
        run_missing(a.profile, log=lambda s: print(s, flush=True), where=where, deadline=a.until)
