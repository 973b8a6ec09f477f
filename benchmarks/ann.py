"""Which approximate-nearest-neighbour index for SQLiteStore: sqlite-vec, usearch, hnswlib and faiss
against exact numpy cosine search, in one run.

Data: seeded, clustered, unit-length 384-d float32 vectors shaped like MiniLM sentence embeddings:
500 random topic centres plus anisotropic noise (variances falling as 1/i over a random basis,
noise norm = centre norm, so a vector's cosine to its own centre is ~0.7 and to others ~0). The
queries are fresh draws from the same mixture, not copies of stored vectors.

Every graph index gets the same shape: HNSW with M=16 links per node and ef_construction=100,
inner product on unit vectors (= cosine), built with all cores. Then, per library:

  build s        adding all N vectors at once
  MB             the saved index on disk (the raw float32 vectors alone are N x 1.5 kB)
  ef             the smallest ef_search in EF_SWEEP whose recall@10 reaches 0.95 (or the largest)
  recall         recall@10 against exact numpy top 10, at that ef
  p50/p99 ms     one query at a time, one thread, k=10, at that ef
  add1k s        adding 1,000 new vectors to the built index
  repl1k s       deleting 1,000 stored vectors and adding 1,000 new ones (a re-ingest of changed
                 files: replace() gives new chunks new row ids); faiss's HNSW cannot delete, so its
                 figure is a full rebuild; hnswlib marks deletions and adds plainly (its
                 replace_deleted, which reuses the freed slots, measured 4-8x slower, lower recall)
  recall'        recall@10 after add1k and repl1k, against exact search over the updated set

Then the same through llmkit's SQLiteStore (--store-size chunks, 100 per document), exact
(ann=False) against the chosen index (ann=True, stores/ann.py): the first search (exact loads the
vector matrix; the index is built and saved), a search in a fresh process with the index file on
disk (loaded), search p50, and the first search after re-ingesting one 100-chunk document (exact
reloads the whole matrix; the index catches up by diffing row ids) against a full rebuild.

sqlite-vec 0.1.x's vec0 table is a brute-force scan (its ANN indexes, DiskANN/IVF, exist only in
0.1.10 alphas built from source), so it is the exact baseline inside SQLite rather than an ANN
index; its ef column is "-". It is a loadable extension, and Python builds without
`--enable-loadable-sqlite-extensions` (this venv's pyenv 3.11, macOS's system Python) cannot load
it at all, so when this interpreter cannot, its part runs in a subprocess under a Python that can
(/usr/bin/python3 with this venv's site-packages on its path).

    python benchmarks/ann.py [--sizes 10000,100000] [--queries 200] [--threads 2] [--store-size 20000]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

# one query thread for everyone, numpy's BLAS included (set before numpy loads OpenBLAS)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

DIM, K, TOPICS = 384, 10, 500
M, EF_CONSTRUCTION = 16, 100
EF_SWEEP = (16, 32, 64, 128, 256)
TARGET = 0.95
UPDATE = 1_000
VEC_QUERIES = 100  # sqlite-vec scans every row per query: fewer queries keep the run short


# --- data ------------------------------------------------------------------------------------------

class Mixture:
    """Seeded topic mixture; every draw from one Mixture shares its centres and noise basis."""

    def __init__(self, seed: int = 0, dim: int = DIM, topics: int = TOPICS):
        rng = np.random.default_rng(seed)
        self.centres = _unit(rng.standard_normal((topics, dim)))
        self.basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
        scales = 1.0 / np.sqrt(np.arange(1, dim + 1))
        self.scales = scales / np.linalg.norm(scales)  # expected noise norm 1 = the centre's norm
        self.rng = rng

    def draw(self, n: int) -> np.ndarray:
        topic = self.rng.integers(0, len(self.centres), n)
        noise = (self.rng.standard_normal((n, len(self.scales))) * self.scales) @ self.basis.T
        return _unit(self.centres[topic] + noise).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_topk(mat: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int = K) -> list[set[int]]:
    scores = queries @ mat.T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return [set(ids[row].tolist()) for row in top]


def recall(found: list, truth: list[set[int]]) -> float:
    return float(np.mean([len(set(map(int, f)) & t) / len(t) for f, t in zip(found, truth)]))


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


# --- the libraries: build / set_ef / search / add / remove / save, same names for each ----------------

class Exact:
    name = "exact numpy"

    def build(self, ids, x, threads):
        self.ids, self.mat = ids.copy(), np.ascontiguousarray(x)

    def set_ef(self, ef):
        pass

    def search(self, q, k):
        s = self.mat @ q
        top = np.argpartition(-s, k - 1)[:k]
        return self.ids[top[np.argsort(-s[top])]]

    def add(self, ids, x):
        self.ids, self.mat = np.concatenate([self.ids, ids]), np.concatenate([self.mat, x])

    def remove(self, ids):
        keep = ~np.isin(self.ids, ids)
        self.ids, self.mat = self.ids[keep], self.mat[keep]

    def save(self, path):
        np.save(path, self.mat)
        return path + ".npy"


class USearch:
    name = "usearch"

    def build(self, ids, x, threads):
        from usearch.index import Index

        self.threads = threads
        self.index = Index(ndim=x.shape[1], metric="ip", dtype="f32", connectivity=M, expansion_add=EF_CONSTRUCTION)
        self.index.add(ids, x, threads=threads)

    def set_ef(self, ef):
        self.index.expansion_search = ef

    def search(self, q, k):
        return self.index.search(q, k, threads=1).keys

    def add(self, ids, x):
        self.index.add(ids, x, threads=self.threads)

    def remove(self, ids):
        self.index.remove(ids)

    def save(self, path):
        self.index.save(path)
        return path


class HNSWLib:
    name = "hnswlib"

    def build(self, ids, x, threads):
        import hnswlib

        self.threads = threads
        self.index = hnswlib.Index(space="ip", dim=x.shape[1])
        self.index.init_index(max_elements=len(ids) + 2 * UPDATE, ef_construction=EF_CONSTRUCTION, M=M)
        self.index.add_items(x, ids, num_threads=threads)

    def set_ef(self, ef):
        self.index.set_ef(ef)

    def search(self, q, k):
        return self.index.knn_query(q, k=k, num_threads=1)[0][0]

    def add(self, ids, x):
        self.index.add_items(x, ids, num_threads=self.threads)

    def remove(self, ids):
        for i in ids:
            self.index.mark_deleted(int(i))

    def save(self, path):
        self.index.save_index(path)
        return path


class Faiss:
    name = "faiss HNSWFlat"

    def build(self, ids, x, threads):
        import faiss

        faiss.omp_set_num_threads(threads)
        self.threads = threads
        self.hnsw = faiss.IndexHNSWFlat(x.shape[1], M, faiss.METRIC_INNER_PRODUCT)
        self.hnsw.hnsw.efConstruction = EF_CONSTRUCTION
        self.index = faiss.IndexIDMap2(self.hnsw)
        self.index.add_with_ids(x, ids)

    def set_ef(self, ef):
        self.hnsw.hnsw.efSearch = ef

    def search(self, q, k):
        import faiss

        faiss.omp_set_num_threads(1)
        return self.index.search(q[None], k)[1][0]

    def add(self, ids, x):
        import faiss

        faiss.omp_set_num_threads(self.threads)
        self.index.add_with_ids(x, ids)

    def remove(self, ids):
        """HNSW in faiss has no deletion (remove_ids raises): rebuild from the kept vectors."""
        import faiss

        try:
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))
        except RuntimeError:
            n = self.index.ntotal
            keys = faiss.vector_to_array(self.index.id_map)
            vecs = self.hnsw.reconstruct_n(0, n)
            keep = ~np.isin(keys, ids)
            ef = self.hnsw.hnsw.efSearch
            self.build(keys[keep], vecs[keep], self.threads)
            self.set_ef(ef)

    def save(self, path):
        import faiss

        faiss.write_index(self.index, path)
        return path


LIBRARIES = (Exact, USearch, HNSWLib, Faiss)


def run_library(cls, ids, x, queries, truth, new, threads, folder) -> dict:
    """Build, sweep ef, time queries, save, then add and replace and re-check recall."""
    lib = cls()
    _, build_s = timed(lib.build, ids, x, threads)
    size = os.path.getsize(lib.save(str(folder / cls.__name__)))
    by_ef = {}
    for ef in EF_SWEEP if cls is not Exact else (0,):
        lib.set_ef(ef)
        by_ef[ef] = recall([lib.search(q, K) for q in queries], truth)
    ef = min((e for e, r in by_ef.items() if r >= TARGET), default=max(by_ef))
    r = by_ef[ef]
    lib.set_ef(ef)
    lat = []
    for q in queries:
        t = time.perf_counter()
        lib.search(q, K)
        lat.append(time.perf_counter() - t)
    n = len(ids)
    add_ids = np.arange(n, n + UPDATE, dtype=np.int64)
    _, add_s = timed(lib.add, add_ids, new[:UPDATE])
    gone = np.random.default_rng(1).choice(ids, UPDATE, replace=False)
    repl_ids = np.arange(n + UPDATE, n + 2 * UPDATE, dtype=np.int64)
    t = time.perf_counter()
    lib.remove(gone)
    lib.add(repl_ids, new[UPDATE:])
    repl_s = time.perf_counter() - t
    all_ids = np.concatenate([ids, add_ids, repl_ids])
    all_x = np.concatenate([x, new])
    keep = ~np.isin(all_ids, gone)
    truth2 = exact_topk(all_x[keep], all_ids[keep], queries)
    got2 = [lib.search(q, K) for q in queries]
    deleted_served = sum(len(set(map(int, g)) & set(gone.tolist())) for g in got2)
    return {"name": cls.name, "build_s": build_s, "mb": size / 1e6, "ef": ef if cls is not Exact else None,
            "recall": r, "p50_ms": 1e3 * np.percentile(lat, 50), "p99_ms": 1e3 * np.percentile(lat, 99),
            "add1k_s": add_s, "repl1k_s": repl_s, "recall2": recall(got2, truth2), "deleted_served": deleted_served,
            "by_ef": by_ef if cls is not Exact else None}


# --- sqlite-vec, possibly in a child interpreter ---------------------------------------------------------

def sqlite_vec_part(data: str, out: str) -> None:
    """Build a vec0 table in a file, query it, add and replace; write the figures as JSON."""
    import sqlite_vec

    z = np.load(data)
    ids, x, queries, new = z["ids"], z["x"], z["queries"][:VEC_QUERIES], z["new"]
    path = str(Path(out).with_suffix(".db"))
    db = sqlite3.connect(path, isolation_level=None)
    db.enable_load_extension(True)
    sqlite_vec.load(db)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{x.shape[1]}] distance_metric=cosine)")

    def insert(ids, x):
        db.execute("BEGIN")
        db.executemany("INSERT INTO v(rowid, embedding) VALUES (?, ?)", zip(map(int, ids), (r.tobytes() for r in x)))
        db.execute("COMMIT")

    def search(q):
        return [r[0] for r in db.execute("SELECT rowid FROM v WHERE embedding MATCH ? AND k = ?", (q.tobytes(), K))]

    _, build_s = timed(insert, ids, x)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = os.path.getsize(path)
    got, lat = [], []
    for q in queries:
        t = time.perf_counter()
        got.append(search(q))
        lat.append(time.perf_counter() - t)
    n = len(ids)
    _, add_s = timed(insert, np.arange(n, n + UPDATE), new[:UPDATE])
    gone = np.random.default_rng(1).choice(ids, UPDATE, replace=False)
    t = time.perf_counter()
    db.execute("BEGIN")
    db.executemany("DELETE FROM v WHERE rowid = ?", [(int(i),) for i in gone])
    db.execute("COMMIT")
    insert(np.arange(n + UPDATE, n + 2 * UPDATE), new[UPDATE:])
    repl_s = time.perf_counter() - t
    got2 = [search(q) for q in queries]
    version = db.execute("SELECT vec_version()").fetchone()[0]
    Path(out).write_text(json.dumps({"name": f"sqlite-vec {version} vec0", "build_s": build_s, "mb": size / 1e6,
                                     "ef": None, "got": got, "p50_ms": 1e3 * np.percentile(lat, 50),
                                     "p99_ms": 1e3 * np.percentile(lat, 99), "add1k_s": add_s, "repl1k_s": repl_s,
                                     "got2": got2, "gone": gone.tolist()}))


def run_sqlite_vec(ids, x, queries, truth, new, folder) -> dict | str:
    """sqlite-vec's figures, or why there are none."""
    if importlib_missing("sqlite_vec"):
        return "sqlite-vec not installed"
    data, out = str(folder / "data.npz"), str(folder / "vec.json")
    np.savez(data, ids=ids, x=x, queries=queries, new=new)
    if hasattr(sqlite3.Connection, "enable_load_extension"):
        sqlite_vec_part(data, out)
    else:
        python = shutil.which("python3", path="/usr/bin:/usr/local/bin")
        site = str(Path(np.__file__).parent.parent)
        probe = "import sqlite3; sqlite3.connect(':memory:').enable_load_extension(True)"
        if not python or subprocess.run([python, "-c", probe], capture_output=True, check=False).returncode:
            return "this Python cannot load SQLite extensions, and no /usr/bin/python3 that can"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), site])}
        subprocess.run([python, "-c", f"import ann; ann.sqlite_vec_part({data!r}, {out!r})"], env=env, check=True)
    res = json.loads(Path(out).read_text())
    queries = queries[:VEC_QUERIES]
    res["recall"] = recall(res.pop("got"), truth[:VEC_QUERIES])
    gone = set(res.pop("gone"))
    all_ids = np.concatenate([ids, np.arange(len(ids), len(ids) + 2 * UPDATE)])
    keep = ~np.isin(all_ids, list(gone))
    truth2 = exact_topk(np.concatenate([x, new])[keep], all_ids[keep], queries)
    got2 = res.pop("got2")
    res["recall2"] = recall(got2, truth2)
    res["deleted_served"] = sum(len(set(g) & gone) for g in got2)
    return res


def importlib_missing(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is None


# --- llmkit's SQLiteStore --------------------------------------------------------------------------------

def store_part(x: np.ndarray, queries: np.ndarray, folder: Path) -> None:
    """Exact vs ANN dense search through SQLiteStore on the same database file."""
    from llmkit.rag.splitters import Chunk
    from llmkit.rag.stores.sqlite import SQLiteStore

    path = folder / "kb.db"
    per_doc = 100

    def put(store, d, vectors):
        chunks = [Chunk(f"doc {d} chunk {i}", {"source": f"d{d}"}, id=f"d{d}#{i}") for i in range(len(vectors))]
        store.replace({"source": f"d{d}", "content_hash": str(d)}, chunks, vectors)

    t = time.perf_counter()
    with SQLiteStore(path, ann=False) as store:
        store.check_embedder("bench", DIM)
        for d in range(0, len(x), per_doc):
            put(store, d // per_doc, x[d:d + per_doc])
    fill_s = time.perf_counter() - t
    out = {}
    for ann in (False, True):
        with SQLiteStore(path, ann=ann) as store:
            _, first = timed(store.search_dense, queries[0], K)
            lat = []
            for q in queries:
                t = time.perf_counter()
                store.search_dense(q, K)
                lat.append(time.perf_counter() - t)
            found = [[h.chunk_id for h in store.search_dense(q, K)] for q in queries]
            put(store, 0, x[:per_doc])  # re-ingest one document (same vectors, new row ids)
            _, after_write = timed(store.search_dense, queries[1], K)
        with SQLiteStore(path, ann=ann) as store:
            _, reopen = timed(store.search_dense, queries[2], K)
        out[ann] = (first, reopen, np.percentile(lat, 50) * 1e3, after_write, found)
    Path(str(path) + ".ann").unlink()
    with SQLiteStore(path, ann=True) as store:
        _, rebuild = timed(store.search_dense, queries[0], K)
    truth = out[False][4]
    print(f"\nSQLiteStore, {len(x):,} chunks of {DIM}-d ({per_doc} per document; filled in {fill_s:.1f}s), k={K}")
    print(f"{'dense search':<24}{'first s':>9}{'reopen s':>10}{'p50 ms':>8}{'after write s':>15}{'recall':>8}")
    for ann, name in ((False, "exact (ann=False)"), (True, "index (ann=True)")):
        first, reopen, p50, after, found = out[ann]
        r = np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)])
        print(f"{name:<24}{first:>9.2f}{reopen:>10.2f}{p50:>8.3f}{after:>15.3f}{r:>8.3f}")
    print(f"  index rebuilt from the database (file deleted): {rebuild:.2f}s; caught up after one 100-chunk "
          f"document: {out[True][3]:.3f}s ({rebuild / out[True][3]:.0f}x less)")
    print(f"  ann=True / ann=False: p50 {out[False][2] / out[True][2]:.1f}x faster, reopen "
          f"{out[False][1] / out[True][1]:.1f}x, first search after a write {out[False][3] / out[True][3]:.1f}x")


# --- report -------------------------------------------------------------------------------------------

def table(n: int, rows: list[dict], notes: list[str]) -> None:
    print(f"\nN = {n:,} vectors, {DIM}-d, k={K}; HNSW M={M} ef_construction={EF_CONSTRUCTION}")
    head = (f"{'index':<24}{'build s':>8}{'MB':>8}{'ef':>5}{'recall':>8}{'p50 ms':>8}{'p99 ms':>8}"
            f"{'add1k s':>9}{'repl1k s':>9}{'recall2':>9}{'del.served':>11}")
    print(head)
    for r in rows:
        ef = "-" if r["ef"] is None else str(r["ef"])
        print(f"{r['name']:<24}{r['build_s']:>8.2f}{r['mb']:>8.1f}{ef:>5}{r['recall']:>8.3f}{r['p50_ms']:>8.3f}"
              f"{r['p99_ms']:>8.3f}{r['add1k_s']:>9.3f}{r['repl1k_s']:>9.3f}{r['recall2']:>9.3f}{r['deleted_served']:>11}")
    for r in rows:
        if r.get("by_ef"):
            print(f"  {r['name']:<22} recall@10 by ef_search: " + ", ".join(f"{e}: {v:.3f}" for e, v in r["by_ef"].items()))
    for note in notes:
        print(f"  {note}")
    base = rows[0]
    print("ratios vs exact numpy (speedup = exact p50 / p50; size = MB / exact MB):")
    for r in rows[1:]:
        print(f"  {r['name']:<24} speedup p50 {base['p50_ms'] / r['p50_ms']:6.1f}x  p99 {base['p99_ms'] / r['p99_ms']:6.1f}x"
              f"  size {r['mb'] / base['mb']:5.2f}x  recall {r['recall']:.3f}"
              f"{'  OK' if r['recall'] >= TARGET else '  below target'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated corpus sizes")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for building")
    ap.add_argument("--store-size", type=int, default=20_000, help="chunks in the SQLiteStore part (0: skip it)")
    ap.add_argument("--skip", default="", help="comma-separated names to leave out at the largest size "
                                                 "(exact, usearch, hnswlib, faiss, sqlite-vec)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    mix = Mixture(seed=0)
    x_all = mix.draw(max(sizes))
    queries = mix.draw(args.queries)
    new = mix.draw(2 * UPDATE)
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for dist in ("numpy", "usearch", "hnswlib", "faiss-cpu", "sqlite-vec"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = "missing"
    print("ann: " + ", ".join(f"{k} {v}" for k, v in versions.items()) +
          f"; {args.queries} queries, {args.threads} build threads, 1 query thread")
    start = time.perf_counter()
    skip = set(filter(None, args.skip.split(",")))
    for n in sizes:
        ids = np.arange(n, dtype=np.int64)
        x = x_all[:n]
        truth = exact_topk(x, ids, queries)
        rows, notes = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for cls in LIBRARIES:
                key = cls.name.split()[0]
                if n == max(sizes) and n != min(sizes) and key in skip:
                    notes.append(f"{cls.name}: skipped at this size (--skip)")
                    continue
                try:
                    rows.append(run_library(cls, ids, x, queries, truth, new, args.threads, Path(tmp)))
                except ImportError as e:
                    notes.append(f"{cls.name}: not installed ({e})")
            if not (n == max(sizes) and n != min(sizes) and "sqlite-vec" in skip):
                res = run_sqlite_vec(ids, x, queries, truth, new, Path(tmp))
                if isinstance(res, str):
                    notes.append(f"sqlite-vec: {res}")
                else:
                    rows.append(res)
                    notes.append(f"sqlite-vec: vec0 is a brute-force scan (no ANN index in 0.1.x releases); "
                                 f"{min(VEC_QUERIES, len(queries))} queries" + ("" if hasattr(sqlite3.Connection, "enable_load_extension")
                                                            else ", run under /usr/bin/python3: this Python cannot "
                                                                 "load SQLite extensions"))
        table(n, rows, notes)
    if args.store_size:
        with tempfile.TemporaryDirectory() as tmp:
            store_part(mix.draw(args.store_size), queries, Path(tmp))
    print(f"\ntotal {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
