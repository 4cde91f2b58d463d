"""Centralized gradient-boosted baselines for scripts/model-eval, on Tessera's own splits.

Run by scripts/model-eval inside its virtualenv with one argument: a JSON file holding the CSV
paths (label holder first), Tessera's per-seed figures from `train_local --splits` (which carry
the label holder's customer ids of the training, validation and holdout rows) and whether to
grid-search. For every seed it trains, on exactly those training rows with early stopping on
exactly those validation rows, and scores exactly those holdout rows:

- LightGBM, tuned; XGBoost, tuned (settings from a small grid on the validation rows of seed 1,
  or the fixed settings below with --no-grid);
- XGBoost with the library's defaults (XGBClassifier(), 100 trees, no early stopping);
- each bank alone: the tuned LightGBM on that bank's columns only (for a bank other than the
  label holder this is hypothetical: the labels are at the label holder).

The population is the label holder's customers; the other banks' columns are joined on id, and a
customer a bank does not have gets NaN there (both libraries treat NaN as missing). The GBDT
seed is the Tessera seed. AUC, KS and ECE are computed as in common/src/model/metrics.rs.
"""
import itertools, json, statistics, sys, time

import lightgbm as lgb
import numpy as np
import pandas as pd
import xgboost as xgb

THREADS = 2
MAX_ROUNDS = 3000
PATIENCE = 200
# Early stopping counts only trees from MIN_ROUNDS on: at learning rate 0.02 the first few trees
# barely move the predictions, yet on 2,400 validation rows their AUC can happen to stay above
# the next 200 trees' (seen: LightGBM stopping at 3 trees, holdout AUC 0.773, ECE 0.024).
MIN_ROUNDS = 200

# Shared by every tuned LightGBM (the grid varies the keys of LGB_GRID on top of these).
LGB_BASE = dict(objective="binary", learning_rate=0.02, bagging_fraction=0.8, bagging_freq=1,
                lambda_l2=1.0, metric="auc", num_threads=THREADS, verbose=-1, force_col_wise=True)
LGB_GRID = dict(num_leaves=[4, 8, 16], min_child_samples=[50, 200], feature_fraction=[0.5, 0.8])
# --no-grid: what the grid chose on default_credit (2 banks), 2026-12-02 (docs/MODEL.md).
LGB_FIXED = dict(num_leaves=16, min_child_samples=200, feature_fraction=0.5)

XGB_BASE = dict(objective="binary:logistic", eta=0.02, subsample=0.8, tree_method="hist",
                eval_metric="auc", nthread=THREADS)
XGB_GRID = dict(max_depth=[3, 4, 5], min_child_weight=[1, 10], colsample_bytree=[0.5, 0.8])
XGB_FIXED = dict(max_depth=4, min_child_weight=10, colsample_bytree=0.8)


# ---- metrics, as common/src/model/metrics.rs ------------------------------------------------

def auc(scores, labels):
    """ROC AUC, tied scores counted as half (average ranks)."""
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s))
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends):
        ranks[a:b] = (a + b - 1) / 2.0 + 1.0
    y = labels[order]
    pos = float(y.sum())
    neg = len(y) - pos
    return (ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg)


def ks(scores, labels):
    """Largest gap between the two classes' score distributions (ties taken together)."""
    order = np.argsort(scores, kind="mergesort")
    s, y = scores[order], labels[order]
    pos = float(y.sum())
    neg = len(y) - pos
    cp, cn = np.cumsum(y) / pos, np.cumsum(1 - y) / neg
    last_of_tie = np.r_[np.diff(s) != 0, True]
    return float(np.abs(cp - cn)[last_of_tie].max())


def ece(probs, labels, bins=10):
    """Row-weighted mean |mean predicted − observed rate| over equal-width bins."""
    b = np.minimum((np.clip(probs, 0.0, 1.0) * bins).astype(int), bins - 1)
    sum_p = np.bincount(b, weights=probs, minlength=bins)
    sum_y = np.bincount(b, weights=labels.astype(float), minlength=bins)
    return float(np.abs(sum_p - sum_y).sum() / len(probs))


# ---- data -----------------------------------------------------------------------------------

def load(files):
    """Label holder's ids and labels, each bank's columns aligned to them, and who knows whom."""
    frames = []
    for i, path in enumerate(files):
        df = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
        df["id"] = df["id"].str.strip()
        if df["id"].duplicated().any():
            sys.exit(f"{path}: duplicate customer id")
        frames.append(df.set_index("id"))
    holder = frames[0]
    ids = holder.index
    y = holder["y"].astype(float).astype(int).to_numpy()
    banks, known = [], []
    for i, df in enumerate(frames):
        cols = df.drop(columns=["y"]) if i == 0 else df
        banks.append(cols.reindex(ids).to_numpy(dtype=float))
        known.append(ids.isin(df.index))
    return ids, y, banks, np.array(known)


# ---- models ---------------------------------------------------------------------------------

class EarlyStop:
    """Validation AUC after each tree; the best number of trees (≥ MIN_ROUNDS), and whether to
    stop (PATIENCE trees past MIN_ROUNDS without beating it)."""

    def __init__(self):
        self.aucs = []

    def add(self, value):
        self.aucs.append(value)
        return len(self.aucs) >= MIN_ROUNDS and len(self.aucs) - self.best() >= PATIENCE

    def best(self):
        """Trees to keep."""
        tail = self.aucs[MIN_ROUNDS - 1:]
        if not tail:
            return len(self.aucs)
        return MIN_ROUNDS + int(np.argmax(tail))


def fit_lgb(params, seed, X, y, tr, va):
    p = dict(LGB_BASE, **params, seed=seed)
    stop = EarlyStop()

    def callback(env):
        if stop.add(env.evaluation_result_list[0][2]):
            raise lgb.callback.EarlyStopException(stop.best() - 1, env.evaluation_result_list)

    model = lgb.train(p, lgb.Dataset(X[tr], y[tr]), MAX_ROUNDS,
                      valid_sets=[lgb.Dataset(X[va], y[va])], callbacks=[callback])
    trees = stop.best()
    return lambda rows: model.predict(X[rows], num_iteration=trees), trees


class XgbEarlyStop(xgb.callback.TrainingCallback):
    def __init__(self, stop):
        super().__init__()
        self.stop = stop

    def after_iteration(self, model, epoch, evals_log):
        return self.stop.add(evals_log["validation"]["auc"][-1])


def fit_xgb(params, seed, X, y, tr, va):
    p = dict(XGB_BASE, **params, seed=seed)
    stop = EarlyStop()
    model = xgb.train(p, xgb.DMatrix(X[tr], y[tr]), MAX_ROUNDS, evals=[(xgb.DMatrix(X[va], y[va]), "validation")],
                      callbacks=[XgbEarlyStop(stop)], verbose_eval=False)
    trees = stop.best()
    return lambda rows: model.predict(xgb.DMatrix(X[rows]), iteration_range=(0, trees)), trees


def fit_xgb_default(seed, X, y, tr, va):
    model = xgb.XGBClassifier(random_state=seed, n_jobs=THREADS).fit(X[tr], y[tr])
    return lambda rows: model.predict_proba(X[rows])[:, 1], model.get_booster().num_boosted_rounds()


def grid(name, fit, space, X, y, tr, va):
    """The settings of `space` with the best validation AUC (GBDT seed 1); never the holdout."""
    results = []
    for values in itertools.product(*space.values()):
        params = dict(zip(space, values))
        predict, rounds = fit(params, 1, X, y, tr, va)
        results.append((auc(predict(va), y[va]), rounds, params))
    results.sort(key=lambda r: -r[0])
    best = results[0]
    print(f"  {name} grid, {len(results)} settings, validation AUC {results[-1][0]:.4f}–{best[0]:.4f}; "
          f"chosen {fmt_params(best[2])} ({best[1]} trees on seed 1)")
    for v, rounds, params in results[1:4]:
        print(f"      runner-up {fmt_params(params)}: {v:.4f} ({rounds} trees)")
    return best[2]


def fmt_params(p):
    return ", ".join(f"{k} {v}" for k, v in p.items())


# ---- report ---------------------------------------------------------------------------------

def mean_sd(values, digits=4):
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def main():
    job = json.load(open(sys.argv[1]))
    files, runs = job["files"], job["runs"]
    started = time.monotonic()
    ids, y, banks, known = load(files)
    X = np.hstack(banks)
    row = {c: i for i, c in enumerate(ids)}
    n_banks = len(banks)
    names = [f"p{i} = {f.rsplit('/', 1)[-1].removesuffix('.gz').removesuffix('.csv')}" for i, f in enumerate(files)]

    # Tessera's splits, as rows of the label holder's file (sorted, so a GBDT's result does not
    # depend on the order in which an alignment happened to list the training customers).
    splits = []
    for r in runs:
        s = r["splits"]
        idx = {k: np.array(sorted(row[c] for c in s[k])) for k in ("train", "validation", "holdout")}
        assert len(idx["holdout"]) == r["holdout_rows"] and len(idx["train"]) == r["train_rows"]
        splits.append(idx)
    for k in ("train", "validation", "holdout"):
        same = all(np.array_equal(s[k], splits[0][k]) for s in splits)
        if k == "holdout":
            assert same, "the holdout differs between seeds"
        elif not same:
            print(f"  note: the {k} rows differ between seeds (each seed's own rows are used)")
    s0 = splits[0]
    ho = s0["holdout"]
    complete = known[:, ho].all(axis=0)
    partial = not complete.all()

    print(f"Against centralized gradient boosting: {len(runs)} seeds; every model trained on the same "
          f"{len(s0['train'])} training rows, early stopping on the same {len(s0['validation'])} validation "
          f"rows, scored on the same {len(ho)} holdout rows (label holder's ids from train_local --splits)")
    t = time.monotonic()
    if job["grid"]:
        lgb_params = grid("LightGBM", fit_lgb, LGB_GRID, X, y, s0["train"], s0["validation"])
        xgb_params = grid("XGBoost", fit_xgb, XGB_GRID, X, y, s0["train"], s0["validation"])
    else:
        lgb_params, xgb_params = LGB_FIXED, XGB_FIXED
        print(f"  fixed settings (--no-grid): LightGBM {fmt_params(lgb_params)}; XGBoost {fmt_params(xgb_params)}")
    grid_seconds = time.monotonic() - t
    print(f"  tuned LightGBM: {fmt_params({k: v for k, v in LGB_BASE.items() if k not in ('metric', 'verbose', 'num_threads', 'force_col_wise')})}, "
          f"{fmt_params(lgb_params)}, {MIN_ROUNDS}–{MAX_ROUNDS} trees by validation AUC (patience {PATIENCE})")
    print(f"  tuned XGBoost:  {fmt_params({k: v for k, v in XGB_BASE.items() if k not in ('eval_metric', 'nthread')})}, "
          f"{fmt_params(xgb_params)}, {MIN_ROUNDS}–{MAX_ROUNDS} trees by validation AUC (patience {PATIENCE})")

    # model name -> per-seed (auc, ks, ece, auc on customers known to all / not to all, trees)
    results = {"Tessera split-NN (federated)": [
        (r["holdout_auc"], r["holdout_ks"], r["holdout_ece"], r["holdout_auc_complete"], r["holdout_auc_partial"], None)
        for r in runs]}
    models = [("LightGBM tuned (centralized)", lambda sd, s: fit_lgb(lgb_params, sd, X, y, s["train"], s["validation"])),
              ("XGBoost tuned (centralized)", lambda sd, s: fit_xgb(xgb_params, sd, X, y, s["train"], s["validation"])),
              ("XGBoost untuned (defaults)", lambda sd, s: fit_xgb_default(sd, X, y, s["train"], s["validation"]))]
    if n_banks > 1:
        for b in range(n_banks):
            Xb = banks[b]
            models.append((f"p{b} alone{'' if b == 0 else ' (*)'}, LightGBM tuned",
                           lambda sd, s, Xb=Xb: fit_lgb(lgb_params, sd, Xb, y, s["train"], s["validation"])))
    for label, fit in models:
        results[label] = []
        for r, s in zip(runs, splits):
            predict, trees = fit(r["seed"], s)
            p = predict(s["holdout"])
            yh = y[s["holdout"]]
            full = auc(p[complete], yh[complete]) if partial else None
            part = auc(p[~complete], yh[~complete]) if partial else None
            results[label].append((auc(p, yh), ks(p, yh), ece(p, yh), full, part, trees))
    fit_seconds = time.monotonic() - started - grid_seconds

    width = max(len(k) for k in results) + 2
    head = f"  {'model':<{width}}{'holdout AUC':<18}{'KS':<16}{'ECE (10 bins)':<18}{'ECE max':<9}"
    extra = [f"AUC known to all ({complete.sum()})", f"not known to all ({(~complete).sum()})"]
    if partial:
        head += f"{extra[0]:<{len(extra[0]) + 3}}{extra[1]}"
    print()
    print(head + "   trees")
    for label, rs in results.items():
        a, k, e, full, part, trees = zip(*rs)
        line = f"  {label:<{width}}{mean_sd(a):<18}{mean_sd(k, 3):<16}{mean_sd(e):<18}{max(e):<9.4f}"
        if partial:
            line += f"{mean_sd(full):<{len(extra[0]) + 3}}{mean_sd(part):<{len(extra[1])}}"
        line += f"   {'' if trees[0] is None else '%d–%d' % (min(trees), max(trees))}"
        print(line.rstrip())
    tess, lgbm = results["Tessera split-NN (federated)"], results["LightGBM tuned (centralized)"]
    diff = [t[0] - l[0] for t, l in zip(tess, lgbm)]
    print(f"  Tessera − tuned LightGBM, holdout AUC (paired by seed): {mean_sd(diff):>18}   "
          f"(per seed: {' '.join('%+.4f' % d for d in diff)})")
    if partial:
        diff_full = [t[3] - l[3] for t, l in zip(tess, lgbm)]
        print(f"  Tessera − tuned LightGBM, AUC on customers known to all:     {mean_sd(diff_full)}")
    print("  ECE per seed:")
    for label, rs in results.items():
        print(f"    {label:<{width}}{' '.join('%.4f' % r[2] for r in rs)}")
    if n_banks > 1:
        print(f"  banks: {'; '.join(names)} (p0 holds the labels). (*) hypothetical: that bank has no labels,")
        print("  they are at p0. A bank alone is scored on the whole holdout (a customer it lacks has only NaN).")
    print("  The untuned XGBoost does no subsampling, so its seed changes nothing (std 0).")
    print(f"  time: Tessera {job['tessera_seconds']:.0f} s ({len(runs)} runs), "
          f"GBDT grid {grid_seconds:.0f} s, baselines {fit_seconds:.0f} s, on {THREADS} threads")


if __name__ == "__main__":
    main()
