"""Fetch public data: URLs (http, https, ftp) with checksums, GEO series files, CELLxGENE census queries.

Downloads are cached, verified, retried and written atomically: a file appears under its final
name only after it was completely received and verified, and a cached file that verifies is never
fetched again. A file downloaded without a published checksum gets a ``<name>.sha256`` sidecar
written after the download, so later runs can verify the cache all the same.

Why a small downloader rather than a Snakemake storage plugin: the http storage plugin neither
verifies checksums nor resolves GEO accessions, and its files are keyed by URL under
``.snakemake/storage``, whereas users expect their raw data under ``resources/`` where they can
see, keep and reuse it; the downloader here is ~200 lines of standard library and is tested
against a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import fnmatch
import hashlib
import html.parser
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .._errors import InputError

log = logging.getLogger(__name__)

GEO_BASE = "https://ftp.ncbi.nlm.nih.gov/geo/series"
_GSE = re.compile(r"^GSE(\d+)$")
_CHECKSUM = re.compile(r"^(sha256|md5):([0-9a-f]+)$", re.IGNORECASE)
CHUNK = 1 << 20


class DownloadError(InputError):
    """A download failed for good (after retries) or did not verify."""


def parse_checksum(text: str | None) -> tuple[str, str] | None:
    """``'sha256:<hex>'`` or ``'md5:<hex>'`` -> (algorithm, lowercase hex); empty -> None."""
    if not text:
        return None
    m = _CHECKSUM.match(text.strip())
    if not m:
        raise ValueError(f"checksum '{text}' is not of the form sha256:<hex> or md5:<hex>")
    algo, hexd = m.group(1).lower(), m.group(2).lower()
    if len(hexd) != {"sha256": 64, "md5": 32}[algo]:
        raise ValueError(
            f"checksum '{text}' has {len(hexd)} hex digits; {algo} has {({'sha256': 64, 'md5': 32})[algo]}"
        )
    return algo, hexd


def file_digest(path: str | Path, algo: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _sidecar(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def cached_ok(dest: str | Path, checksum: str | None = None) -> bool:
    """True when ``dest`` exists and verifies against ``checksum`` or, lacking one, its sidecar."""
    dest = Path(dest)
    if not dest.is_file():
        return False
    want = parse_checksum(checksum)
    if want is None:
        side = _sidecar(dest)
        if not side.is_file():
            return False
        want = ("sha256", side.read_text().split()[0].lower())
    return file_digest(dest, want[0]) == want[1]


def _fetch_once(url: str, tmp: Path, timeout: float) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "cscniche-downloader"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(tmp, "wb") as out:
        expected = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
        n = 0
        while True:
            block = resp.read(CHUNK)
            if not block:
                break
            out.write(block)
            n += len(block)
        if expected is not None and expected.isdigit() and n != int(expected):
            raise ConnectionError(f"connection dropped after {n} of {expected} bytes")


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in (408, 429) or exc.code >= 500
    return isinstance(exc, (urllib.error.URLError, ConnectionError, TimeoutError, OSError))


def download(
    url: str,
    dest: str | Path,
    *,
    checksum: str | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 1.0,
    sample: str | None = None,
) -> Path:
    """Download ``url`` to ``dest`` atomically, verify it, and return ``dest``.

    A cached ``dest`` that verifies (against ``checksum``, else against its ``.sha256`` sidecar)
    is returned without any network access. The data goes to a temporary file beside ``dest``
    and is renamed only after it is complete and verified; on any failure the temporary file is
    removed and nothing is left under ``dest``. Network errors, dropped connections and HTTP 5xx
    are retried ``retries`` times with exponential ``backoff``; HTTP 4xx is final.

    Raises
    ------
    DownloadError
        One line naming the URL, the sample and what to do.
    """
    dest = Path(dest)
    want = parse_checksum(checksum)
    if cached_ok(dest, checksum):
        log.info("cached and verified: %s", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        log.warning("cached %s does not verify; downloading it again", dest)
        dest.unlink()
        _sidecar(dest).unlink(missing_ok=True)
    tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    last: BaseException | None = None
    try:
        for attempt in range(1, retries + 2):
            try:
                _fetch_once(url, tmp, timeout)
                last = None
                break
            except Exception as exc:  # noqa: BLE001 - classified below
                last = exc
                tmp.unlink(missing_ok=True)
                if not _retryable(exc) or attempt > retries:
                    break
                wait = backoff * 2 ** (attempt - 1)
                log.warning("download of %s failed (%s); retry %d of %d in %.1f s", url, exc, attempt, retries, wait)
                time.sleep(wait)
        if last is not None:
            if isinstance(last, urllib.error.HTTPError):
                why = f"HTTP {last.code} {last.reason}"
            else:
                why = f"{type(last).__name__}: {last}"
            raise DownloadError(
                f"download of {url} failed ({why}); check the URL and your network, then run again",
                sample=sample,
                path=str(dest),
            )
        if want is not None:
            got = file_digest(tmp, want[0])
            if got != want[1]:
                raise DownloadError(
                    f"download of {url} does not match its {want[0]} checksum (expected {want[1]}, got {got}); "
                    "the file changed on the server or the checksum in the sample sheet is wrong",
                    sample=sample,
                    path=str(dest),
                )
            os.replace(tmp, dest)
        else:
            digest = file_digest(tmp, "sha256")
            os.replace(tmp, dest)
            _sidecar(dest).write_text(f"{digest}  {dest.name}\n")
    finally:
        tmp.unlink(missing_ok=True)
    log.info("downloaded %s -> %s", url, dest)
    return dest


def geo_series_url(accession: str, *, base: str = GEO_BASE) -> str:
    """The supplementary-files folder of a GEO series, e.g. GSE149614 -> .../GSE149nnn/GSE149614/suppl/."""
    m = _GSE.match(accession.strip())
    if not m:
        raise ValueError(f"'{accession}' is not a GEO series accession (GSE followed by digits)")
    digits = m.group(1)
    stem = f"GSE{digits[:-3]}nnn" if len(digits) > 3 else "GSEnnn"
    return f"{base.rstrip('/')}/{stem}/{accession.strip()}/suppl/"


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


def geo_files(accession: str, patterns: list[str], *, base: str = GEO_BASE, timeout: float = 60.0) -> list[str]:
    """URLs of the supplementary files of a GEO series whose names match any glob in ``patterns``.

    Reads the series' ``suppl/`` folder listing (an HTML index) once.
    """
    folder = geo_series_url(accession, base=base)
    try:
        with urllib.request.urlopen(folder, timeout=timeout) as resp:
            text = resp.read().decode("utf-8", "replace")
    except Exception as exc:  # noqa: BLE001
        raise DownloadError(
            f"could not list the GEO files of {accession} at {folder} ({exc}); check the accession"
        ) from None
    parser = _Links()
    parser.feed(text)
    names = sorted({Path(urllib.parse.urlparse(h).path).name for h in parser.links} - {""})
    chosen = [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]
    if not chosen:
        raise DownloadError(
            f"no supplementary file of {accession} matches {patterns} (files: {', '.join(names[:20]) or 'none'})"
        )
    return [urllib.parse.urljoin(folder, n) for n in chosen]


def parse_census_query(text: str) -> dict[str, str]:
    """Parse ``key=value; key=value`` (keys: organism, census_version, obs_filter, and obs columns)."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        if "=" not in part:
            raise ValueError(f"census query part '{part}' is not key=value")
        k, v = (s.strip() for s in part.split("=", 1))
        out[k] = v
    return out


def census_obs_filter(query: dict[str, str]) -> str:
    """SOMA value filter from a parsed query: obs columns joined by ``and`` plus any ``obs_filter``."""
    special = {"organism", "census_version", "obs_filter", "uri"}
    terms = [f"{k} == {v!r}" for k, v in query.items() if k not in special]
    if query.get("obs_filter"):
        terms.append(f"({query['obs_filter']})")
    if not terms:
        raise ValueError("a census query needs at least one obs filter (e.g. tissue_general=liver)")
    return " and ".join(terms)


def census_anndata(query: str | dict[str, str], *, sample: str | None = None):
    """Run a CELLxGENE census query and return raw counts as AnnData (gene symbols as var_names).

    ``query`` keys: ``organism`` (default Homo sapiens), ``census_version`` (pin it for
    reproducibility; default ``stable``), ``uri`` (a local or mirrored census), ``obs_filter`` (a
    SOMA value filter), and any obs column = value (e.g. ``tissue_general=liver``).
    """
    import cellxgene_census

    q = parse_census_query(query) if isinstance(query, str) else dict(query)
    value_filter = census_obs_filter(q)
    kwargs = {"uri": q["uri"]} if q.get("uri") else {"census_version": q.get("census_version", "stable")}
    try:
        with cellxgene_census.open_soma(**kwargs) as census:
            adata = cellxgene_census.get_anndata(
                census, organism=q.get("organism", "Homo sapiens"), obs_value_filter=value_filter
            )
    except Exception as exc:  # noqa: BLE001
        raise DownloadError(
            f"CELLxGENE census query '{value_filter}' failed ({type(exc).__name__}: {exc})", sample=sample
        ) from None
    if adata.n_obs == 0:
        raise DownloadError(f"CELLxGENE census query '{value_filter}' matched no cell", sample=sample)
    if "feature_name" in adata.var:
        adata.var_names = adata.var["feature_name"].astype(str).to_numpy()
        adata.var_names_make_unique()
    adata.uns["census_query"] = {"filter": value_filter, **{k: v for k, v in q.items() if k != "obs_filter"}}
    return adata


MANIFEST = "manifest.tsv"
ARCHIVE = re.compile(r"\.(tar|tar\.gz|tgz|zip)$", re.IGNORECASE)


def fetch_sample(
    folder: str | Path,
    *,
    sample: str,
    urls: list[str] | None = None,
    checksums: list[str] | None = None,
    geo: str | None = None,
    geo_patterns: list[str] | None = None,
    census: str | None = None,
    geo_base: str = GEO_BASE,
    retries: int = 3,
    backoff: float = 1.0,
) -> Path:
    """Fetch a sample's remote data into ``folder`` and write ``folder/manifest.tsv`` last (atomically).

    Sources: explicit ``urls`` (with optional aligned ``checksums``), the supplementary files of a GEO
    series matching ``geo_patterns``, or a CELLxGENE ``census`` query (written as ``census.h5ad``).
    Archives are extracted beside themselves. The manifest lists ``file``, ``url`` and ``sha256``; its
    first data row names what :func:`cscniche.load.load_sample` should read (see :func:`manifest_target`).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str]] = []
    if census:
        dest = folder / "census.h5ad"
        if not dest.exists():
            tmp = folder / f".census.h5ad.part-{os.getpid()}"
            try:
                census_anndata(census, sample=sample).write_h5ad(tmp)
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
        rows.append((dest.name, f"census:{census}", file_digest(dest)))
    else:
        urls = list(urls or [])
        if geo:
            urls += geo_files(geo, geo_patterns or ["*"], base=geo_base)
        if not urls:
            raise InputError("no url, geo or census source given", sample=sample)
        checksums = list(checksums or [])
        if checksums and len(checksums) != len(urls):
            raise InputError(
                f"{len(urls)} URLs but {len(checksums)} checksums; give one per URL or none", sample=sample
            )
        for i, url in enumerate(urls):
            name = Path(urllib.parse.urlparse(url).path).name or f"file{i}"
            dest = download(
                url,
                folder / name,
                checksum=checksums[i] if checksums else None,
                retries=retries,
                backoff=backoff,
                sample=sample,
            )
            rows.append((dest.name, url, file_digest(dest)))
    tmp = folder / f".{MANIFEST}.part-{os.getpid()}"
    tmp.write_text("file\turl\tsha256\n" + "".join(f"{f}\t{u}\t{h}\n" for f, u, h in rows))
    os.replace(tmp, folder / MANIFEST)
    return folder / MANIFEST


def manifest_target(manifest: str | Path) -> Path:
    """The path to load for a fetched sample: its one data file, an extracted archive's folder, or the folder.

    Several files (a 10x triplet) mean the folder; one archive is extracted (once) to ``<name>.d/``.
    """
    from ._formats import extract_archive

    manifest = Path(manifest)
    folder = manifest.parent
    files = [line.split("\t")[0] for line in manifest.read_text().splitlines()[1:] if line.strip()]
    if len(files) == 1:
        f = folder / files[0]
        if ARCHIVE.search(f.name):
            out = folder / f"{f.name}.d"
            done = out / ".extracted"
            if not done.exists():
                target = extract_archive(f, out)
                done.write_text(str(target.relative_to(out)) if target != out else ".")
            return (out / done.read_text()).resolve()
        return f
    return folder
