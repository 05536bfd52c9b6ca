"""Remote sources through the workflow: GEO-style 10x files with author metadata, a URL with a checksum,
a 404 - all served by an HTTP server the test starts on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import io

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_snakemake, shared_file
from load.test_sources import _Handler, server  # noqa: F401 - the fixture
from scipy import io as spio
from scipy import sparse

pytestmark = pytest.mark.slow


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def test_geo_and_url_samples_are_fetched_cached_and_loaded(server, tmp_path):  # noqa: F811
    base, h = server
    wu = ad.read_h5ad(shared_file("tumour/wu2021_tnbc_CID4465.h5ad"))
    buf = io.BytesIO()
    spio.mmwrite(buf, sparse.csr_matrix(wu.X.T.astype(np.int64)))
    prefix = "/GSE176nnn/GSE176078/suppl/"
    files = {
        "GSE176078_CID4465_matrix.mtx.gz": _gz(buf.getvalue()),
        "GSE176078_CID4465_genes.tsv.gz": _gz("".join(f"{g}\t{g}\n" for g in wu.var_names).encode()),
        "GSE176078_CID4465_barcodes.tsv.gz": _gz(("\n".join(wu.obs_names) + "\n").encode()),
        "GSE176078_CID4465_metadata.csv": wu.obs[["celltype_major"]]
        .reset_index(names="cell")
        .to_csv(index=False)
        .encode(),
        "GSE176078_other_sample.tar.gz": b"not fetched",
    }
    for name, body in files.items():
        h.files[prefix + name] = body
    h.files[prefix] = "".join(f'<a href="{n}">{n}</a>' for n in files).encode()
    cosmx = shared_file("spatial/cosmx_lung_subset.h5ad").read_bytes()
    h.files["/cosmx.h5ad"] = cosmx
    sha = hashlib.sha256(cosmx).hexdigest()
    sheet = pd.DataFrame(
        [
            {"sample": "wu_geo", "path": "", "geo": "GSE176078", "geo_files": "GSE176078_CID4465_*",
             "obs_table": "GSE176078_CID4465_metadata.csv", "cell_type_key": "celltype_major",
             "subset": "celltype_major != 'Normal Epithelial'", "url": "", "checksum": ""},
            {"sample": "cosmx_url", "path": "", "geo": "", "geo_files": "", "obs_table": "", "cell_type_key": "cell_type",
             "subset": "", "url": f"{base}/cosmx.h5ad", "checksum": f"sha256:{sha}"},
        ]
    )  # fmt: skip
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    cfg = {
        "samples": "samples.tsv",
        "download": {"geo_base": base, "retries": 0},
        "qc": {"min_genes": 20, "min_counts": 20},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    targets = ["results/wu_geo/qc.tsv", "results/cosmx_url/qc.tsv"]
    run_snakemake(tmp_path, "--configfile", str(tmp_path / "config.yaml"), "--cores", "2", *targets)
    qc = pd.read_csv(tmp_path / "results/wu_geo/qc.tsv", sep="\t")
    assert qc["n_cells_in"].iloc[0] == int((wu.obs["celltype_major"] != "Normal Epithelial").sum())
    assert pd.read_csv(tmp_path / "results/cosmx_url/qc.tsv", sep="\t")["n_cells_in"].iloc[0] == 2814
    assert h.hits.get(prefix + "GSE176078_other_sample.tar.gz") is None  # only the matching files
    assert h.hits["/cosmx.h5ad"] == 1
    # a second run finds the cache verified: nothing is fetched again
    hits = dict(h.hits)
    res = run_snakemake(
        tmp_path, "--configfile", str(tmp_path / "config.yaml"), "--cores", "2", "--forcerun", "qc", *targets
    )
    assert "rule fetch" not in res.stdout + res.stderr
    assert {k: v for k, v in h.hits.items()} == hits
    # a 404 is one clear line and leaves no manifest
    bad = sheet.iloc[[1]].assign(sample="gone", url=f"{base}/gone.h5ad", checksum="")
    bad.to_csv(tmp_path / "bad.tsv", sep="\t", index=False)
    cfg["samples"] = "bad.tsv"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    res = run_snakemake(
        tmp_path, "--configfile", str(tmp_path / "bad.yaml"), "--cores", "1", "results/gone/qc.tsv", check=False
    )
    assert res.returncode != 0
    err = [ln for ln in res.stderr.splitlines() if ln.startswith("ERROR: ")]
    assert len(err) == 1 and "sample 'gone'" in err[0] and "HTTP 404" in err[0]
    assert not list((tmp_path / "resources/downloads").glob("*/gone.h5ad*"))
    assert len(list((tmp_path / "resources/downloads").glob("*/manifest.tsv"))) == 2
