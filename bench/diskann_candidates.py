"""The indexes bench/diskann_libs.py compares, one adapter each: build into a directory, open it
for search with one thread, set the search breadth, answer one query.

Owns: how each library is built and opened (parameters fixed here, so every round measures the
same index) and our own beam search over a memory-mapped Vamana graph. Never measures anything
itself; the driver times, counts and compares.

Every adapter searches unit float32 vectors by inner product (= cosine). Files an adapter writes
stay in its own directory; `base.f32.npy` in the work directory is the shared float32 copy.
"""

from __future__ import annotations

import bisect
import json
import os
import shutil

import numkong
import numpy as np

R = 32            # Vamana out-degree (SVS), as in the figures
BUILD_WINDOW = 64  # Vamana construction window (L)
ALPHA_MIP = 0.95   # SVS's advice for inner product: alpha below 1
M = 16             # hnswlib and usearch connectivity, as kissvdb's HNSW
EF_CONSTRUCTION = 200  # hnswlib, as kissvdb's HNSW
EXPANSION_ADD = 128    # usearch's construction breadth (its default)
SVS_HEADER = 1024  # bytes before the rows in an SVS .svs file (graph and data alike)


def base_path(work: str) -> str:
    return os.path.join(work, "base.f32.npy")


def load_base(work: str, rows: int | None = None) -> np.ndarray:
    base = np.load(base_path(work), mmap_mode="r")
    return base if rows is None else base[:rows]


class Hnswlib:
    """In-memory reference: hnswlib M16, ef_construction 200 (kissvdb's HNSW)."""
    breadths = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256)
    file = "hnsw.bin"

    def build(self, base: np.ndarray, out: str, threads: int, progress=None) -> None:
        import hnswlib
        idx = hnswlib.Index(space="ip", dim=base.shape[1])
        idx.init_index(max_elements=len(base), M=M, ef_construction=EF_CONSTRUCTION, random_seed=100)
        for lo, hi in _chunks(len(base), progress):
            idx.add_items(np.ascontiguousarray(base[lo:hi]), np.arange(lo, hi), num_threads=threads)
        idx.save_index(os.path.join(out, self.file))

    def open(self, out: str, work: str) -> None:
        import hnswlib
        meta = _meta(work)
        self.idx = hnswlib.Index(space="ip", dim=meta["dim"])
        self.idx.load_index(os.path.join(out, self.file), max_elements=meta["rows"])
        self.idx.set_num_threads(1)

    def set(self, breadth: int) -> None:
        self.idx.set_ef(breadth)

    def search(self, q: np.ndarray, k: int) -> list[int]:
        return self.idx.knn_query(q, k=k, num_threads=1)[0][0].tolist()

    def batch(self, qs: np.ndarray, k: int) -> None:
        self.idx.knn_query(qs, k=k, num_threads=1)


class SvsF32:
    """Intel SVS Vamana over float32 vectors (all in RAM)."""
    breadths = (10, 15, 20, 30, 40, 60, 80)

    def build(self, base: np.ndarray, out: str, threads: int, progress=None) -> None:
        import svs
        params = svs.VamanaBuildParameters(graph_max_degree=R, window_size=BUILD_WINDOW, alpha=ALPHA_MIP)
        idx = svs.Vamana.build(params, self._data(base, out), svs.DistanceType.MIP, num_threads=threads)
        idx.save(*(os.path.join(out, d) for d in ("config", "graph", "data")))
        self._cleanup(out)

    def _data(self, base: np.ndarray, out: str):
        return np.ascontiguousarray(base, dtype=np.float32)

    def _cleanup(self, out: str) -> None:
        pass

    def _loader(self, out: str):
        import svs
        return svs.VectorDataLoader(os.path.join(out, "data"), svs.DataType.float32)

    def open(self, out: str, work: str) -> None:
        import svs
        self.idx = svs.Vamana(os.path.join(out, "config"), svs.GraphLoader(os.path.join(out, "graph")),
                              self._loader(out), svs.DistanceType.MIP, num_threads=1)

    def set(self, breadth: int) -> None:
        self.idx.search_window_size = breadth

    def search(self, q: np.ndarray, k: int) -> list[int]:
        return self.idx.search(q.reshape(1, -1), k)[0][0].tolist()

    def batch(self, qs: np.ndarray, k: int) -> None:
        self.idx.search(qs, k)


class SvsLvq8(SvsF32):
    """SVS Vamana over LVQ 8-bit codes only (no full-precision copy kept)."""
    primary, residual = 8, 0

    def _data(self, base: np.ndarray, out: str):
        import svs
        raw = os.path.join(out, "raw.fvecs")
        svs.write_vecs(np.ascontiguousarray(base, dtype=np.float32), raw)
        return svs.LVQLoader(svs.VectorDataLoader(raw, svs.DataType.float32), self.primary, self.residual)

    def _cleanup(self, out: str) -> None:
        os.remove(os.path.join(out, "raw.fvecs"))

    def _loader(self, out: str):
        import svs
        return svs.LVQLoader(os.path.join(out, "data"))


class SvsLvq4x8(SvsLvq8):
    """SVS Vamana over LVQ 4-bit codes with 8-bit residuals for re-ranking (both in RAM)."""
    primary, residual = 4, 8


class Usearch:
    """usearch HNSW (connectivity 16), searched through a memory-mapped view of the saved file."""
    breadths = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384)
    dtype = "f32"
    file = "usearch.bin"

    def build(self, base: np.ndarray, out: str, threads: int, progress=None) -> None:
        from usearch.index import Index
        idx = Index(ndim=base.shape[1], metric="ip", dtype=self.dtype, connectivity=M,
                    expansion_add=EXPANSION_ADD)
        for lo, hi in _chunks(len(base), progress):
            idx.add(np.arange(lo, hi), np.ascontiguousarray(base[lo:hi]), threads=threads)
        idx.save(os.path.join(out, self.file))

    def open(self, out: str, work: str) -> None:
        from usearch.index import Index
        self.idx = Index.restore(os.path.join(out, self.file), view=True)

    def set(self, breadth: int) -> None:
        self.idx.expansion_search = breadth

    def search(self, q: np.ndarray, k: int) -> list[int]:
        return self.idx.search(q, k, threads=1).keys.tolist()

    def batch(self, qs: np.ndarray, k: int) -> None:
        self.idx.search(qs, k, threads=1)


class UsearchI8(Usearch):
    dtype = "i8"


class UsearchBf16(Usearch):
    """bfloat16 rows: half the file of float32; usearch runs its AVX-512 BF16 kernels here."""
    dtype = "bf16"


class UsearchI8Rerank(UsearchI8):
    """usearch i8 view for candidates, re-ranked exactly from the memory-mapped float32 rows:
    the issue's "graph and full-precision vectors in memory-mapped files" with usearch's graph.
    Shares the usearch_i8 build."""
    shares = "usearch_i8"
    fetch = 3  # candidates per wanted hit

    def build(self, base, out, threads, progress=None) -> None:
        raise RuntimeError("shares the usearch_i8 build")

    def open(self, out: str, work: str) -> None:
        super().open(out, work)
        self.f32 = load_base(work)

    def search(self, q: np.ndarray, k: int) -> list[int]:
        cand = self.idx.search(q, k * self.fetch, threads=1).keys
        cand.sort()  # page order for the mmap reads
        scores = self.f32[cand] @ q
        top = np.argpartition(-scores, k - 1)[:k] if len(cand) > k else np.arange(len(cand))
        return cand[top[np.argsort(-scores[top])]].tolist()


class OwnBeam:
    """Our own search: SVS's Vamana graph as a memory-mapped neighbour file, int8 codes in RAM
    scored with numkong, the final beam re-ranked from the memory-mapped float32 rows.
    Shares the svs_f32 build (its graph file is rows of [count, R neighbours] uint32)."""
    shares = "svs_f32"
    breadths = (16, 24, 32, 48, 64, 96)
    rerank = 4  # beam entries re-ranked per wanted hit

    def build(self, base, out, threads, progress=None) -> None:
        raise RuntimeError("shares the svs_f32 build")

    def open(self, out: str, work: str) -> None:
        from kissvdb.vectors.distance import q8_encode
        f32 = load_base(work)
        n = len(f32)
        self.graph = np.memmap(os.path.join(out, "graph", "graph_0.svs"), dtype=np.uint32, mode="r",
                               offset=SVS_HEADER).reshape(n, R + 1)
        codes = os.path.join(work, "codes.i8.npy")
        if not os.path.exists(codes):  # derived once, like a build step; kept beside the base
            c, s = zip(*(q8_encode(np.asarray(f32[lo:hi])) for lo, hi in _chunks(n)))
            np.save(codes, np.concatenate(c))
            np.save(os.path.join(work, "scales.f32.npy"), np.concatenate(s))
        self.codes = np.load(codes)
        self.scales = np.load(os.path.join(work, "scales.f32.npy"))
        self.f32 = f32
        self.entry = self._entry(work)
        self.stamp = np.zeros(n, np.uint32)
        self.qid = 0

    def _entry(self, work: str) -> int:
        """The row closest to the mean direction (a medoid stand-in), found once and kept."""
        from kissvdb.vectors.distance import q8_query
        path = os.path.join(work, "entry.json")
        if not os.path.exists(path):
            mean = np.asarray(self.f32[:20_000]).mean(axis=0)
            qc = q8_query(mean / np.linalg.norm(mean)).reshape(1, -1)
            best = (-np.inf, 0)
            for lo, hi in _chunks(len(self.codes)):
                s = np.asarray(numkong.cdist(qc, self.codes[lo:hi], metric="dot"))[0] * self.scales[lo:hi]
                best = max(best, (float(s.max()), lo + int(s.argmax())))
            with open(path, "w") as f:
                json.dump(best[1], f)
        with open(path) as f:
            return json.load(f)

    def _approx(self, qc: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.asarray(numkong.cdist(qc, self.codes[rows], metric="dot"))[0] * self.scales[rows]

    def set(self, breadth: int) -> None:
        self.L = breadth

    def search(self, q: np.ndarray, k: int) -> list[int]:
        from kissvdb.vectors.distance import q8_query
        qc = q8_query(q).reshape(1, -1)
        self.qid += 1
        qid, stamp, graph, L = self.qid, self.stamp, self.graph, self.L
        stamp[self.entry] = qid
        beam = [(-float(self._approx(qc, np.array([self.entry]))[0]), self.entry)]
        done: set[int] = set()
        i = 0
        while i < len(beam):
            node = beam[i][1]
            if node in done:
                i += 1
                continue
            done.add(node)
            row = graph[node]
            nb = row[1:1 + row[0]]
            nb = nb[stamp[nb] != qid]
            if len(nb):
                stamp[nb] = qid
                i = self._merge(beam, (-self._approx(qc, nb)).tolist(), nb.tolist(), L, i)
        cand = np.array(sorted(v for _, v in beam[: k * self.rerank]))
        scores = self.f32[cand] @ q
        return cand[np.argsort(-scores)[:k]].tolist()

    @staticmethod
    def _merge(beam: list, negs: list, nodes: list, L: int, i: int) -> int:
        """Insert better candidates into the sorted beam (capped at L); the scan restarts at
        the first inserted position when it is ahead of the current one."""
        for s, v in zip(negs, nodes):
            if len(beam) >= L and s >= beam[-1][0]:
                continue
            pos = bisect.bisect(beam, (s, v))
            beam.insert(pos, (s, v))
            if len(beam) > L:
                beam.pop()
            i = min(i, pos)
        return i


CANDIDATES = {
    "hnswlib": Hnswlib,
    "svs_f32": SvsF32,
    "svs_lvq8": SvsLvq8,
    "svs_lvq4x8": SvsLvq4x8,
    "usearch_f32": Usearch,
    "usearch_bf16": UsearchBf16,
    "usearch_i8": UsearchI8,
    "usearch_i8_rerank": UsearchI8Rerank,
    "own_numkong": OwnBeam,
}


def build_dir(work: str, name: str) -> str:
    """Where `name`'s files live (an adapter that shares another's build reads that one's)."""
    return os.path.join(work, getattr(CANDIDATES[name], "shares", name))


def fresh_dir(path: str) -> str:
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def _meta(work: str) -> dict:
    with open(os.path.join(work, "meta.json")) as f:
        return json.load(f)


def _chunks(n: int, progress=None, size: int = 50_000):
    """Row ranges of `size`, reporting each to `progress` (rows done, total) when given."""
    for lo in range(0, n, size):
        hi = min(n, lo + size)
        yield lo, hi
        if progress:
            progress(hi, n)
