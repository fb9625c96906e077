"""The optuna proposer's driver (meta-agent/optuna.ts): one Optuna study, rebuilt from the run's
ledger, asked for the next trial.

    python3 optuna_driver.py --probe   one JSON line: the Optuna version and which optional
                                       packages (cmaes, scipy, torch) can be imported
    python3 optuna_driver.py           reads the request (one JSON line) on stdin, then:
                                       writes one suggestion (a JSON line) per ask; after each it
                                       reads a line: `again` tells that trial FAIL (in memory
                                       only: it repeated an evaluated candidate) and asks once
                                       more; anything else, or the end of stdin, ends the driver

The request: {sampler, seed, sampler_seed, direction, space, trials, study_attrs}
  space:  [{key, type: float|int, low, high, log} | {key, type: categorical, n}]
          (a categorical parameter's value is the index of the choice)
  trials: [{params: {key: value}, value: number|null, state: complete|fail, system_attrs}]
  study_attrs: the study's system attributes after the last proposal (a QMC sampler's position)
A suggestion: {params, trial_number, system_attrs, study_attrs}, the attributes being what the
sampler stored for this trial and the study (CMA-ES keeps its state there), so that the next
request rebuilds the same study.

Nothing but the result goes to stdout; warnings are silenced; an error ends the driver with one
line on stderr and exit status 1.
"""
import json
import sys
import warnings


def out(obj):
    sys.stdout.write(json.dumps(obj, default=plain, sort_keys=True) + "\n")
    sys.stdout.flush()


def plain(o):
    """numpy scalars and arrays as JSON"""
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def probe():
    import importlib.util

    info = {"python": sys.executable}
    for name in ("cmaes", "scipy", "torch"):
        info[name] = importlib.util.find_spec(name) is not None
    import optuna

    info["optuna"] = optuna.__version__
    out(info)


def distributions(space):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    dists = {}
    for d in space:
        t = d["type"]
        if t == "float":
            dists[d["key"]] = FloatDistribution(float(d["low"]), float(d["high"]), log=bool(d["log"]))
        elif t == "int":
            dists[d["key"]] = IntDistribution(int(d["low"]), int(d["high"]), log=bool(d["log"]))
        elif t == "categorical":
            dists[d["key"]] = CategoricalDistribution(list(range(int(d["n"]))))
        else:
            raise ValueError(f"unknown dimension type {t!r}")
    return dists


def make_sampler(req, dists):
    import optuna

    name = req["sampler"]
    seed = int(req["sampler_seed"])
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        # start the search distribution at the run's starting values (numeric knobs only)
        x0 = {k: v for k, v in (req.get("x0") or {}).items() if k in dists and not hasattr(dists[k], "choices")}
        return optuna.samplers.CmaEsSampler(x0=x0 or None, seed=seed)
    if name == "qmc":
        # a scrambled Sobol sequence (unscrambled, its first point is the space's lower corner):
        # the same seed on every call, so that it stays one sequence (its position is in
        # study_attrs); what QMC does not cover (categorical knobs) is drawn with this call's seed
        return optuna.samplers.QMCSampler(
            scramble=True, seed=int(req["seed"]), independent_sampler=optuna.samplers.RandomSampler(seed=seed)
        )
    if name == "gp":
        if not hasattr(optuna.samplers, "GPSampler"):
            raise RuntimeError(f"sampler gp needs Optuna >= 3.6 (found {optuna.__version__})")
        return optuna.samplers.GPSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}")


def run():
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    optuna.logging.disable_default_handler()
    line = sys.stdin.readline()
    if not line:
        raise ValueError("no request on stdin")
    req = json.loads(line)
    dists = distributions(req["space"])
    sampler = make_sampler(req, dists)
    study = optuna.create_study(direction=req["direction"], sampler=sampler)
    storage, sid = study._storage, study._study_id
    for k, v in sorted((req.get("study_attrs") or {}).items()):
        storage.set_study_system_attr(sid, k, v)
    for t in req["trials"]:
        params = t["params"]
        complete = t["state"] == "complete"
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.COMPLETE if complete else TrialState.FAIL,
                value=float(t["value"]) if complete else None,
                params={k: params[k] for k in dists if k in params},
                distributions={k: d for k, d in dists.items() if k in params},
                system_attrs=t.get("system_attrs") or {},
            )
        )
    max_asks = int(req.get("max_asks", 1))
    merged = {}
    for _ in range(max_asks):
        trial = study.ask(fixed_distributions=dists)
        # what the sampler stored while asking; a state stored on a repeated (discarded) ask
        # belongs to the next one
        attrs = storage.get_trial(trial._trial_id).system_attrs
        merged.update(attrs)
        out({
            "params": {k: trial.params[k] for k in dists},
            "trial_number": trial.number,
            "system_attrs": merged,
            "study_attrs": storage.get_study_system_attrs(sid),
        })
        reply = sys.stdin.readline().strip()
        if reply != "again":
            return
        study.tell(trial, state=TrialState.FAIL)


def main():
    warnings.simplefilter("ignore")
    try:
        if sys.argv[1:] == ["--probe"]:
            probe()
        else:
            run()
    except Exception as e:  # one line for the proposer to report
        msg = str(e).strip().splitlines()
        sys.stderr.write(f"optuna driver: {type(e).__name__}: {msg[0] if msg else ''}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
