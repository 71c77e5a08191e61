"""Vectors over real HTTP: ingest (CBOR and JSON upsert_batch) and HNSW search against the trivial
POST route of the same app, measured in one run with `wrk` (C load generator, so the client does
not steal the Python server's CPU).

Starts `kissvdb serve` (subprocess, data on disk, 127.0.0.1, port 0) and:
- ingest: wrk posts one fixed upsert_batch body (256 items x dim as CBOR float32 bytes; 96 items
  as JSON, under MAX_BODY_BYTES) to an IVF_FLAT_Q8 and an HNSW collection; vectors/s = requests/s
  x items. The same ids are rewritten each time: the index work (append rows, add graph nodes,
  log every event) is the same as for new ids;
- search: a collection preloaded with --dataset (or seeded data) answers POST .../search
  {"vector", "k": 10, "ef"} at 16 connections; POST /v1/_bench/echo with the same JSON body is the
  ceiling (it parses the body and answers). Target: search >= 80% of echo;
- search_batch: 16 different queries per request (CBOR), 4 connections, in queries/s.

    .venv/bin/python bench/vectors_http.py --dataset ../shared/data/minilm-docstrings-20k.base.f16.npy
Needs wrk (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cbor2
import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
import wrk  # noqa: E402
from report import progress  # noqa: E402
from vector_targets import KissvdbVectors  # noqa: E402

from tests.e2e.server import ServerProcess  # noqa: E402



def wrk_post(server, path: str, body: bytes, ctype: str, connections: int, duration: int, tmp: Path) -> wrk.WrkResult:
    """wrk posting one fixed body (read from a file once per wrk thread)."""
    body_file = tmp / f"body-{abs(hash((path, len(body))))}.bin"
    body_file.write_bytes(body)
    text = wrk.script(wrk.lua_str(path), method="POST", body="BODY", headers=wrk.bearer(server.api_key, ctype),
                      prelude=f"BODY = read_file({wrk.lua_str(str(body_file))})")
    return wrk.run(server.base_url, wrk.write_script(tmp, "post", text), connections, duration)


def load_base(args) -> np.ndarray:
    if args.dataset:
        return np.load(args.dataset).astype(np.float32)[: args.rows]
    rng = np.random.default_rng(42)
    return rng.standard_normal((args.rows, args.dims)).astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset")
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--dims", type=int, default=384)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--ef", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    base = load_base(args)
    dim = base.shape[1]
    rows = []
    with tempfile.TemporaryDirectory(prefix="kissvdb-vbench-") as tmpd:
        tmp = Path(tmpd)
        server = ServerProcess(tmp / "data", env={"IVF_MIN_TRAIN_VECTORS": "1024", "BENCH_ROUTES": "1"})
        with server:
            client = httpx.Client(base_url=server.base_url, headers=server.headers, timeout=120)
            for name, kind in (("ingest_ivf", "IVF_FLAT_Q8"), ("ingest_hnsw", "HNSW")):
                r = client.post(f"/v1/vector/{name}", json={"dim": dim, "metric": "cosine", "index": kind})
                assert r.status_code == 200, r.text
            target = KissvdbVectors(server.base_url, server.api_key)
            target.create("search", dim, args.ef)
            progress(f"preloading {len(base)} x {dim} into an HNSW collection (CBOR, 1 client), then compacting")
            t = time.perf_counter()
            target.load("search", base)
            preload_s = time.perf_counter() - t
            rows.append(("preload HNSW, CBOR x256, 1 Python client, and compaction",
                         f"{len(base) / preload_s:,.0f} vectors/s", ""))
            rng_q = np.random.default_rng(5)
            q = base[123] + 0.01
            sbody = json.dumps({"vector": q.tolist(), "k": 10, "ef": args.ef}).encode()
            progress(f"wrk: search vs echo at {args.connections} connections, {args.rounds} interleaved rounds")
            pairs = []
            for _ in range(args.rounds):
                rs = wrk_post(server, "/v1/vector/search/search", sbody, "application/json", args.connections,
                         args.duration, tmp)
                re_ = wrk_post(server, "/v1/_bench/echo", sbody, "application/json", args.connections, args.duration, tmp)
                pairs.append((rs, re_))
            ratios = sorted(a.rps / b.rps for a, b in pairs)
            rs, re_ = sorted(pairs, key=lambda p: p[0].rps / p[1].rps)[len(pairs) // 2]
            rows.append((f"HNSW search k=10 ef={args.ef}, {args.connections} conns (median round)", f"{rs.rps:,.0f} req/s",
                         f"p50 {rs.p50_ms:.2f} ms p99 {rs.p99_ms:.2f} ms errors {rs.errors}/{rs.bad_status}"))
            rows.append(("POST /v1/_bench/echo same body, same round", f"{re_.rps:,.0f} req/s",
                         f"p50 {re_.p50_ms:.2f} ms p99 {re_.p99_ms:.2f} ms"))
            rows.append(("search / echo per round", " / ".join(f"{r:.2f}" for r in ratios), "target >= 0.80"))
            # Bulk searching: 16 different queries per search_batch request (CBOR, float32 bytes),
            # 4 connections, against the single-search rounds above (queries/s).
            qb = base[rng_q.choice(len(base), 16, replace=False)] + 0.01
            bbody = cbor2.dumps({"queries": [{"vector": v.astype("<f4").tobytes(), "k": 10, "ef": args.ef}
                                             for v in qb]})
            progress("wrk: search_batch x16 (CBOR), 4 connections")
            rb = wrk_post(server, "/v1/vector/search/search_batch", bbody, "application/cbor", 4, args.duration, tmp)
            rows.append((f"HNSW search_batch x16 k=10 ef={args.ef}, CBOR, 4 conns", f"{rb.rps * 16:,.0f} queries/s",
                         f"{rb.rps:,.0f} req/s p50 {rb.p50_ms:.2f} ms; "
                         f"{rb.rps * 16 / rs.rps:.1f}x the single-search median round"))
            m = client.get("/v1/metrics").text
            batched = [l for l in m.splitlines() if l.startswith("kissvdb_vector_search_batch")]
            rows.append(("search batching", ", ".join(batched), ""))
            rng = np.random.default_rng(1)
            batch = rng.standard_normal((256, dim)).astype(np.float32)
            cbor_body = cbor2.dumps({"items": [{"id": f"b{i}", "vector": batch[i].tobytes()} for i in range(256)]})
            json_items = 96
            json_body = json.dumps({"items": [{"id": f"b{i}", "vector": batch[i].tolist()}
                                              for i in range(json_items)]}).encode()
            progress(f"JSON batch body {len(json_body)} bytes, CBOR {len(cbor_body)} bytes")
            for name in ("ingest_ivf", "ingest_hnsw"):
                for label, body, ctype, n in (("CBOR", cbor_body, "application/cbor", 256),
                                              ("JSON", json_body, "application/json", json_items)):
                    progress(f"wrk: {name} {label} upsert_batch")
                    r = wrk_post(server, f"/v1/vector/{name}/upsert_batch", body, ctype, 4, args.duration, tmp)
                    rows.append((f"{name} upsert_batch {label} x{n}, 4 conns",
                                 f"{r.rps * n:,.0f} vectors/s",
                                 f"{r.rps:.0f} req/s p50 {r.p50_ms:.1f} ms p99 {r.p99_ms:.1f} ms "
                                 f"errors {r.errors}/{r.bad_status}"))
            info = client.get("/v1/vector/ingest_ivf").json()
            rows.append(("ingest_ivf after the run", f"{info['count']} live", f"total_records {info['total_records']} "
                         f"runs {info.get('runs')} trained {info.get('ivf_trained')}"))
            client.close()
            problems = [l for l in server.log_lines() if "ERROR" in l or "CRITICAL" in l or "Traceback" in l]
            if problems:
                progress(f"server logged {len(problems)} error line(s); first ones:\n" + "\n".join(problems[:20]))
                rows.append(("server errors logged", str(len(problems)), problems[0][:200]))
    print()
    print(f"data: {args.dataset or 'seeded gaussian'} {base.shape}, cpus={os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.2f}")
    print("| measurement | figure | details |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
