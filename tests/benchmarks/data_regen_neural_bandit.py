"""Regenerate the vendored classification datasets of the neural-bandit reproduction.

Not a test (pytest does not collect ``tests/benchmarks/``).
Run it by hand from the repository root, with a Python that has ``numpy``,
``pandas`` and the pure-Python ``rdata`` reader (only this conversion needs them)::

    python -m venv /tmp/convenv && /tmp/convenv/bin/pip install rdata numpy pandas
    /tmp/convenv/bin/python tests/benchmarks/data_regen_neural_bandit.py [--workdir /tmp/nb_data]

It downloads Debian packages with ``apt-get download`` (run ``apt-get update`` first),
unpacks them with ``dpkg-deb -x``, reads River's bundled
``segment.csv.zip`` from the River installed next to regretflow, and writes into
``connectors/datasets/``:

======================  =====================================  =================
file                    source                                 rows x features, K
======================  =====================================  =================
bandit_mushroom.csv.gz  Debian r-cran-cba, ``Mushroom.rda``    8124 x 22, 2
bandit_vehicle.csv.gz   Debian r-cran-mlbench, ``Vehicle.rda`` 846 x 18, 4
bandit_segment.csv.gz   River ``ImageSegments``                2310 x 18, 7
bandit_fashion14.npz    Debian dataset-fashion-mnist, t10k     10000 x 196, 10
======================  =====================================  =================

Shuttle (7 classes) and digits are not duplicated here: the reproduction reuses
``shuttle.csv.gz`` and ``digits.csv.gz`` that ``tests/benchmarks/data_regen_analytic_ridge.py``
vendors for :mod:`regretflow.connectors.datasets.imbalanced`.

Mushroom's features are the R factor codes, 0-based, missing as -1. Fashion-MNIST
keeps the first 10,000 test images, 2x2 mean-pooled to 14x14 and rounded to uint8 so
that the file stays under 2 MB. Every file is written reproducibly (gzip mtime 0),
and its SHA-256 goes into ``bandit_datasets.sha256``, which the loader checks.
"""

from __future__ import annotations

import argparse
import csv
import glob
import gzip
import hashlib
import io
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "connectors" / "datasets"


def _run(cmd: list[str], cwd: Path) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def _deb(workdir: Path, package: str) -> Path:
    debs = glob.glob(str(workdir / f"{package}_*.deb"))
    if not debs:
        _run(["apt-get", "download", package], workdir)
        debs = glob.glob(str(workdir / f"{package}_*.deb"))
    target = workdir / "extracted"
    _run(["dpkg-deb", "-x", debs[0], str(target)], workdir)
    return target


def _read_rda(path: Path):
    import rdata  # conversion-time only dependency

    parsed = rdata.parser.parse_file(str(path))
    converted = rdata.conversion.convert(parsed)
    (frame,) = converted.values()
    return frame


def _write_csv_gz(name: str, header: list[str], rows: list[list]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path = OUT / name
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(buffer.getvalue().encode())
    return path


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.8g}"


def mushroom(workdir: Path) -> Path:
    root = _deb(workdir, "r-cran-cba")
    frame = _read_rda(root / "usr/lib/R/site-library/cba/data/Mushroom.rda")
    label = frame["class"].astype(str)
    features = [c for c in frame.columns if c != "class"]
    rows = []
    for i in range(len(frame)):
        codes = [int(frame[c].cat.codes.iloc[i]) for c in features]  # -1 for NA
        rows.append(codes + [label.iloc[i]])
    return _write_csv_gz("bandit_mushroom.csv.gz", features + ["label"], rows)


def _mlbench(workdir: Path, name: str, out: str) -> Path:
    root = _deb(workdir, "r-cran-mlbench")
    frame = _read_rda(root / f"usr/lib/R/site-library/mlbench/data/{name}.rda")
    features = [c for c in frame.columns if c != "Class"]
    values = frame[features].to_numpy(dtype=float)
    values = np.where(np.isnan(values), -1.0, values)
    label = frame["Class"].astype(str).to_list()
    rows = [[_number(v) for v in values[i]] + [label[i]] for i in range(len(frame))]
    return _write_csv_gz(out, features + ["label"], rows)


def _river_segment_zip() -> Path:
    try:
        import river.datasets

        return Path(river.datasets.__file__).parent / "segment.csv.zip"
    except ImportError:  # the conversion venv has no River: use the project's venv
        found = glob.glob(str(REPO / ".venv/lib/python*/site-packages/river/datasets/segment.csv.zip"))
        if not found:
            raise SystemExit("River's segment.csv.zip not found: install river or create .venv") from None
        return Path(found[0])


def segment() -> Path:
    path = _river_segment_zip()
    with zipfile.ZipFile(path) as archive:
        text = archive.read(archive.namelist()[0]).decode()
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    rows = [[_number(float(v)) for v in row[:-1]] + [row[-1]] for row in reader if row]
    return _write_csv_gz("bandit_segment.csv.gz", header[:-1] + ["label"], rows)


def fashion14(workdir: Path, n_rows: int = 10_000) -> Path:
    root = _deb(workdir, "dataset-fashion-mnist")
    base = root / "usr/share/datasets/fashion-mnist"
    with gzip.open(base / "t10k-images-idx3-ubyte.gz") as fh:
        images = np.frombuffer(fh.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)[:n_rows]
    with gzip.open(base / "t10k-labels-idx1-ubyte.gz") as fh:
        labels = np.frombuffer(fh.read(), dtype=np.uint8, offset=8)[:n_rows]
    pooled = images.reshape(-1, 14, 2, 14, 2).astype(np.float64).mean(axis=(2, 4))
    X = np.rint(pooled).astype(np.uint8).reshape(len(images), 196)
    path = OUT / "bandit_fashion14.npz"
    # np.savez_compressed stores zip timestamps of "now"; write the members by hand instead.
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, array in (("X", X), ("y", labels.copy())):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/nb_data", help="where packages are downloaded and unpacked")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    written = [
        mushroom(workdir),
        _mlbench(workdir, "Vehicle", "bandit_vehicle.csv.gz"),
        segment(),
        fashion14(workdir),
    ]
    lines = []
    for path in sorted(written):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.name}\n")
        print(f"{path.name}: {os.path.getsize(path)} bytes, sha256 {digest}")
    (OUT / "bandit_datasets.sha256").write_text("".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
