"""Optuna as a user would run it, driven over stdin/stdout by bench/peers.ts (ask/tell).

First line: {"sampler": "tpe|cmaes|random", "seed": int, "dims": [...], "start": {...}}.
Then lines: "ask" -> one JSON line of params; "tell <value>" -> "ok"; "best" -> JSON params of
study.best_trial; "quit". The start values are enqueued as the first trial (what the user has).
"""
import json
import sys
import warnings

warnings.filterwarnings("ignore")
import optuna  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.ERROR)


def distribution(d):
    if d["type"] == "float":
        return optuna.distributions.FloatDistribution(d["low"], d["high"], log=d["log"])
    if d["type"] == "int":
        return optuna.distributions.IntDistribution(d["low"], d["high"], log=d["log"])
    if d["type"] == "bool":
        return optuna.distributions.CategoricalDistribution([False, True])
    return optuna.distributions.CategoricalDistribution(d["choices"])


def main():
    cfg = json.loads(sys.stdin.readline())
    seed = cfg["seed"]
    sampler = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
    }[cfg["sampler"]]()
    study = optuna.create_study(direction="minimize", sampler=sampler)
    dists = {d["key"]: distribution(d) for d in cfg["dims"]}
    study.enqueue_trial(cfg["start"])
    trial = None
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "ask":
            trial = study.ask(dists)
            print(json.dumps(trial.params), flush=True)
        elif cmd.startswith("tell "):
            study.tell(trial, float(cmd[5:]))
            print("ok", flush=True)
        elif cmd == "best":
            print(json.dumps(study.best_trial.params), flush=True)
        elif cmd == "quit":
            break


main()
