"""The cohort table concatenation (rule cohort_tables): text copy when the headers agree, else a join by name."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from cscniche import cohort


def _write(path, df):
    df.to_csv(path, sep="\t", index=False, compression={"method": "gzip", "mtime": 0} if path.suffix == ".gz" else None)
    return path


def _read(path):
    return pd.read_csv(path, sep="\t")


@pytest.mark.parametrize("suffix", [".tsv", ".tsv.gz"])
def test_same_headers_copy_the_text_and_keep_every_value(tmp_path, suffix):
    rng = np.random.default_rng(0)
    frames = []
    for i in range(3):
        n = 50 + 10 * i
        frames.append(pd.DataFrame({
            "cell_id": [f"s{i}_c{j}" for j in range(n)],
            "sample": f"s{i}",
            "n_genes": rng.integers(200, 5000, n),
            "stemness": rng.normal(size=n),
            "cell_type": rng.choice(["T cell", "Malignant", ""], n),
        }))  # fmt: skip
    frames[1].loc[3, "stemness"] = np.nan
    frames.append(frames[0].iloc[:0].assign(sample=[]))  # a sample with no rows: header only
    paths = [_write(tmp_path / f"s{i}{suffix}", f) for i, f in enumerate(frames)]
    out = tmp_path / f"cohort{suffix}"
    cohort.write_cohort_table(paths, out)
    got = _read(out)
    pd.testing.assert_frame_equal(got, pd.concat([_read(p) for p in paths[:3]], ignore_index=True))
    assert len(got) == 50 + 60 + 70 and got["stemness"].isna().sum() == 1
    # the text of every row is the sample's own (no re-formatting)
    opener = gzip.open if suffix.endswith(".gz") else open
    body = b"".join(opener(p, "rb").read().split(b"\n", 1)[1] for p in paths)
    assert opener(out, "rb").read().split(b"\n", 1)[1] == body
    first = out.read_bytes()
    cohort.write_cohort_table(paths, out)
    assert out.read_bytes() == first  # deterministic, also the gzip stream


def test_different_headers_are_joined_by_column_name(tmp_path):
    a = _write(tmp_path / "a.tsv", pd.DataFrame({"sample": ["a", "a"], "x": [1, 2]}))
    b = _write(tmp_path / "b.tsv", pd.DataFrame({"sample": ["b"], "y": [0.5], "x": [3]}))
    out = tmp_path / "cohort.tsv"
    cohort.write_cohort_table([a, b], out)
    got = _read(out)
    assert list(got.columns) == ["sample", "x", "y"]
    assert got["x"].tolist() == [1, 2, 3] and np.isnan(got["y"].iloc[0]) and got["y"].iloc[2] == 0.5


def test_a_table_without_a_final_newline_does_not_merge_rows(tmp_path):
    a = tmp_path / "a.tsv"
    a.write_bytes(b"sample\tx\na\t1")  # no final newline
    b = tmp_path / "b.tsv"
    b.write_bytes(b"sample\tx\nb\t2\n")
    out = tmp_path / "cohort.tsv"
    cohort.write_cohort_table([a, b], out)
    assert out.read_bytes() == b"sample\tx\na\t1\nb\t2\n"
