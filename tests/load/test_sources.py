"""Downloads against a real HTTP server on 127.0.0.1; GEO listing; a census query on a local SOMA experiment."""

from __future__ import annotations

import hashlib
import http.server
import threading

import numpy as np
import pytest
from conftest import shared_file

from cscniche.load._sources import (
    DownloadError,
    cached_ok,
    census_obs_filter,
    download,
    geo_files,
    geo_series_url,
    parse_census_query,
    parse_checksum,
)


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    hits: dict[str, int] = {}
    flaky: dict[str, int] = {}  # path -> number of first requests that drop the connection

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.flaky.get(self.path, 0) > 0:
            self.flaky[self.path] -= 1
            self.wfile.write(body[: len(body) // 2])  # then close: a dropped connection
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture()
def server():
    _Handler.files, _Handler.hits, _Handler.flaky = {}, {}, {}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_caches_and_is_atomic(server, tmp_path):
    base, h = server
    data = shared_file("spatial/cosmx_lung_subset.h5ad").read_bytes()
    h.files["/data/cosmx.h5ad"] = data
    sha = hashlib.sha256(data).hexdigest()
    dest = tmp_path / "cache" / "cosmx.h5ad"
    download(f"{base}/data/cosmx.h5ad", dest, checksum=f"sha256:{sha}")
    assert dest.read_bytes() == data
    download(f"{base}/data/cosmx.h5ad", dest, checksum=f"sha256:{sha}")
    assert h.hits["/data/cosmx.h5ad"] == 1  # the verified cache is not fetched again
    import anndata as ad

    assert ad.read_h5ad(dest).n_obs == 2814


def test_download_without_checksum_writes_a_sidecar(server, tmp_path):
    base, h = server
    h.files["/x.txt"] = b"hello\n"
    dest = tmp_path / "x.txt"
    download(f"{base}/x.txt", dest)
    assert cached_ok(dest)
    download(f"{base}/x.txt", dest)
    assert h.hits["/x.txt"] == 1
    dest.write_bytes(b"tampered\n")  # a corrupted cache is fetched again
    download(f"{base}/x.txt", dest)
    assert dest.read_bytes() == b"hello\n" and h.hits["/x.txt"] == 2


def test_wrong_checksum_leaves_nothing(server, tmp_path):
    base, h = server
    h.files["/m.csv"] = b"a,b\n1,2\n"
    dest = tmp_path / "m.csv"
    with pytest.raises(DownloadError, match=r"sample 's1', file '.*m.csv': download of .* does not match its md5"):
        download(f"{base}/m.csv", dest, checksum="md5:" + "0" * 32, sample="s1", backoff=0)
    assert list(tmp_path.iterdir()) == []


def test_404_is_final_and_leaves_nothing(server, tmp_path):
    base, h = server
    dest = tmp_path / "missing.h5ad"
    with pytest.raises(DownloadError, match=r"HTTP 404") as e:
        download(f"{base}/missing.h5ad", dest, sample="s2", backoff=0)
    assert "\n" not in str(e.value)
    assert h.hits["/missing.h5ad"] == 1  # no retry on 4xx
    assert list(tmp_path.iterdir()) == []


def test_dropped_connection_is_retried_then_fails_cleanly(server, tmp_path):
    base, h = server
    body = bytes(range(256)) * 400
    h.files["/big.bin"] = body
    h.flaky["/big.bin"] = 1
    dest = tmp_path / "big.bin"
    download(f"{base}/big.bin", dest, retries=2, backoff=0)  # first attempt drops, second succeeds
    assert dest.read_bytes() == body and h.hits["/big.bin"] == 2
    h.flaky["/big2.bin"] = 10
    h.files["/big2.bin"] = body
    with pytest.raises(DownloadError, match="dropped"):
        download(f"{base}/big2.bin", tmp_path / "big2.bin", retries=2, backoff=0)
    assert h.hits["/big2.bin"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin", "big.bin.sha256"]


def test_checksum_parsing():
    assert parse_checksum("MD5:" + "A" * 32) == ("md5", "a" * 32)
    assert parse_checksum("md5:" + "A" * 32) == ("md5", "a" * 32)
    assert parse_checksum("") is None
    with pytest.raises(ValueError, match="hex digits"):
        parse_checksum("sha256:abc")
    with pytest.raises(ValueError, match="form"):
        parse_checksum("crc32:abcd")


def test_geo_listing_and_pattern(server):
    base, h = server
    assert geo_series_url("GSE149614") == "https://ftp.ncbi.nlm.nih.gov/geo/series/GSE149nnn/GSE149614/suppl/"
    assert geo_series_url("GSE999", base="http://x").endswith("/GSEnnn/GSE999/suppl/")
    h.files["/GSE125nnn/GSE125449/suppl/"] = (
        b'<html><body><a href="GSE125449_Set1_barcodes.tsv.gz">a</a> <a href="GSE125449_Set1_genes.tsv.gz">b</a>'
        b'<a href="GSE125449_Set1_matrix.mtx.gz">c</a><a href="GSE125449_Set2_matrix.mtx.gz">d</a>'
        b'<a href="/geo/">up</a></body></html>'
    )
    urls = geo_files("GSE125449", ["GSE125449_Set1_*"], base=base)
    assert [u.rsplit("/", 1)[1] for u in urls] == [
        "GSE125449_Set1_barcodes.tsv.gz",
        "GSE125449_Set1_genes.tsv.gz",
        "GSE125449_Set1_matrix.mtx.gz",
    ]
    with pytest.raises(DownloadError, match="no supplementary file"):
        geo_files("GSE125449", ["*.h5ad"], base=base)
    with pytest.raises(ValueError, match="not a GEO series"):
        geo_series_url("GSM123")


def test_census_query_parsing():
    q = parse_census_query("organism=Homo sapiens; tissue_general=liver; disease=hepatocellular carcinoma")
    assert q["organism"] == "Homo sapiens"
    assert census_obs_filter(q) == "tissue_general == 'liver' and disease == 'hepatocellular carcinoma'"
    with pytest.raises(ValueError, match="key=value"):
        parse_census_query("liver")


def test_census_query_on_a_local_soma_experiment(tmp_path):
    tiledbsoma = pytest.importorskip("tiledbsoma")
    pytest.importorskip("tiledbsoma.io")
    import anndata as ad

    from cscniche.load._sources import census_anndata

    a = ad.read_h5ad(shared_file("spatial/cosmx_lung_subset.h5ad"))
    a = a[:300].copy()
    a.obs = (
        a.obs[["cell_type"]]
        .astype(str)
        .assign(tissue_general=np.where(np.arange(300) < 200, "lung", "liver"), disease="lung adenocarcinoma")
    )
    a.var["feature_name"] = a.var_names.astype(str)
    a.var_names = [f"ENSG{i:011d}" for i in range(a.n_vars)]
    a.obsm = {}
    root = tmp_path / "census"
    tiledbsoma.Collection.create(str(root)).close()
    with tiledbsoma.Collection.open(str(root), "w") as c:
        c.add_new_collection("census_data")
    tiledbsoma.io.from_anndata(
        str(root / "census_data" / "homo_sapiens"), a, measurement_name="RNA", X_layer_name="raw"
    )
    with tiledbsoma.Collection.open(str(root), "w") as c:
        c["census_data"].set(
            "homo_sapiens",
            tiledbsoma.Experiment.open(str(root / "census_data" / "homo_sapiens")),
            use_relative_uri=True,
        )
    got = census_anndata(f"uri={root}; tissue_general=lung; obs_filter=cell_type != 'tumor 5'")
    want = a[(a.obs.tissue_general == "lung").to_numpy() & (a.obs.cell_type != "tumor 5").to_numpy()]
    assert got.n_obs == want.n_obs and got.n_obs > 0
    assert "AATK" in got.var_names
    np.testing.assert_allclose(got.X.sum(), want.X.sum())


def test_fetch_sample_tenx_triplet_and_tarball(server, tmp_path):
    import tarfile

    from cscniche.load._readers import load_sample
    from cscniche.load._sources import fetch_sample, manifest_target

    base, h = server
    src = tmp_path / "src"
    src.mkdir()
    import anndata as ad
    from scipy import io as spio
    from scipy import sparse

    a = ad.read_h5ad(shared_file("spatial/cosmx_lung_subset.h5ad"))[:120].copy()
    spio.mmwrite(str(src / "GSE1_S1_matrix.mtx"), sparse.csr_matrix(a.X.T.astype(np.int64)))
    (src / "GSE1_S1_features.tsv").write_text(
        "".join(f"ID{i}\t{g}\tGene Expression\n" for i, g in enumerate(a.var_names))
    )
    (src / "GSE1_S1_barcodes.tsv").write_text("\n".join(a.obs_names) + "\n")
    for f in src.iterdir():
        h.files[f"/GSE1nnn/GSE1000/suppl/{f.name}"] = f.read_bytes()
    h.files["/GSE1nnn/GSE1000/suppl/"] = "".join(f'<a href="{f.name}">x</a>' for f in src.iterdir()).encode()
    man = fetch_sample(tmp_path / "dl", sample="s1", geo="GSE1000", geo_patterns=["GSE1_S1_*"], geo_base=base)
    target = manifest_target(man)
    assert target == tmp_path / "dl"
    got = load_sample(target, sample="s1")
    assert got.n_obs == 120 and got.X.sum() == a.X.sum()
    hits = dict(h.hits)
    fetch_sample(tmp_path / "dl", sample="s1", geo="GSE1000", geo_patterns=["GSE1_S1_*"], geo_base=base)
    assert {k: v for k, v in h.hits.items() if not k.endswith("/")} == {
        k: v for k, v in hits.items() if not k.endswith("/")
    }

    tar = tmp_path / "s2.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(src, arcname="sample2")
    h.files["/s2.tar.gz"] = tar.read_bytes()
    man = fetch_sample(tmp_path / "dl2", sample="s2", urls=[f"{base}/s2.tar.gz"])
    target = manifest_target(man)
    assert target.name == "sample2" and load_sample(target, sample="s2").n_obs == 120
    assert manifest_target(man) == target  # extracted once


def test_fetch_sample_checksum_count_must_match(tmp_path):
    from cscniche import InputError
    from cscniche.load._sources import fetch_sample

    with pytest.raises(InputError, match="2 URLs but 1 checksums"):
        fetch_sample(
            tmp_path, sample="s", urls=["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"], checksums=["md5:" + "0" * 32]
        )
    with pytest.raises(InputError, match="no url, geo or census"):
        fetch_sample(tmp_path, sample="s")
