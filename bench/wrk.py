"""wrk, the load generator of every HTTP bench: one runner and one Lua library for its scripts.

wrk is C on an event loop, so one wrk thread drives 64 keep-alive connections with a small share
of one core and leaves the rest of a small box to the server under test. A script is built from
three Lua expressions (method, path, body) evaluated per request on top of a shared library:

- `tid` (1-based wrk thread) and `run` (a nonce passed after `--`, so keys and ids of one run never
  repeat those of an earlier run against the same server);
- `next_n()`, a per-thread counter; `scattered()`, its value as 8 hex digits scattered over the key
  space (an odd multiplier is a bijection mod 2^32, so keys stay distinct);
- `rand(lo, hi)`, seeded per thread; `b64(s)` for etcd's JSON gateway;
- `read_file(path)`, `read_lines(path)` and `cycle(list)`, to replay bodies prepared by Python;
- `split_ids(text)` and `fill_ids(pieces)`: a body with `@ID@` marks, each replaced by a fresh id.

`done` prints one `WRKJSON {...}` line that `run` parses. `run` also reports the CPU time wrk
itself used (its rusage as a waited-for child), so a table can show the client was not the
bottleneck, and the CPU time of any server processes named in `watch_pids` over the same run.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import process_cpu_seconds  # noqa: E402

LIB_LUA = r"""
local threads_started = 0
function setup(thread)
  threads_started = threads_started + 1
  thread:set("tid", threads_started)
end

run = "0"
function init(args)
  run = args[1] or "0"
  math.randomseed(tid * 7919 + (tonumber(run) or 0) % 104729)
end

local counter = 0
function next_n()
  counter = counter + 1
  return counter
end

function scattered()
  return string.format("%08x", (next_n() * 2654435761) % 4294967296)
end

function rand(lo, hi)
  return math.random(lo, hi)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local d1, d2 = math.floor(n / 262144) % 64, math.floor(n / 4096) % 64
    local d3, d4 = math.floor(n / 64) % 64, n % 64
    out[#out + 1] = B64:sub(d1 + 1, d1 + 1) .. B64:sub(d2 + 1, d2 + 1)
      .. (b and B64:sub(d3 + 1, d3 + 1) or "=") .. (c and B64:sub(d4 + 1, d4 + 1) or "=")
  end
  return table.concat(out)
end

function read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  return text
end

function read_lines(path)
  local lines = {}
  for line in io.lines(path) do lines[#lines + 1] = line end
  return lines
end

local cursors = {}
function cycle(list)
  local i = (cursors[list] or rand(0, #list - 1)) % #list + 1
  cursors[list] = i
  return list[i]
end

function split_ids(text)
  local pieces, start = {}, 1
  while true do
    local i, j = text:find("@ID@", start, true)
    if not i then break end
    pieces[#pieces + 1] = text:sub(start, i - 1)
    start = j + 1
  end
  pieces[#pieces + 1] = text:sub(start)
  return pieces
end

function fill_ids(pieces)
  local prefix = run .. "-" .. tid .. "-" .. next_n() .. "-"
  local out = {pieces[1]}
  for i = 2, #pieces do
    out[#out + 1] = prefix .. (i - 1)
    out[#out + 1] = pieces[i]
  end
  return table.concat(out)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\":%d,\"duration_us\":%d,\"err_connect\":%d,\"err_read\":%d," ..
    "\"err_write\":%d,\"err_status\":%d,\"err_timeout\":%d,\"p50_us\":%d,\"p99_us\":%d," ..
    "\"max_us\":%d,\"mean_us\":%.1f}\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, latency.mean))
end
"""


def lua_str(text: str) -> str:
    """`text` as a Lua string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def script(path: str, *, method: str = "GET", body: str | None = None, headers: dict[str, str] | None = None,
           prelude: str = "") -> str:
    """A wrk script. `path` and `body` are Lua expressions evaluated per request (use lua_str for a
    constant); `prelude` is Lua run once per thread before the first request."""
    lines = [LIB_LUA]
    lines += [f"wrk.headers[{lua_str(k)}] = {lua_str(v)}" for k, v in (headers or {}).items()]
    lines.append(prelude)
    lines.append("request = function()\n"
                 f"  return wrk.format({lua_str(method)}, {path}, nil, {body if body is not None else 'nil'})\n"
                 "end\n")
    return "\n".join(lines)


def bearer(api_key: str, content_type: str | None = None) -> dict[str, str]:
    """The headers of an authenticated request (and its body's type)."""
    headers = {"Authorization": f"Bearer {api_key}"}
    if content_type:
        headers["Content-Type"] = content_type
    return headers


def write_script(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.lua"
    path.write_text(text)
    return path


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    errors: int  # connect, read, write and timeout errors
    bad_status: int  # answers that were not 2xx/3xx
    p50_ms: float
    p99_ms: float
    max_ms: float
    client_cpu_s: float  # wrk's own user + system CPU time
    server_cpu_s: float | None = None  # the watched processes' CPU time over the same run

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def client_cpu(self) -> float:
        """wrk's CPU use as a share of one core."""
        return self.client_cpu_s / self.duration_s if self.duration_s else 0.0

    @property
    def server_cpu(self) -> float | None:
        return None if self.server_cpu_s is None or not self.duration_s else self.server_cpu_s / self.duration_s

    @property
    def server_us_per_request(self) -> float | None:
        return None if self.server_cpu_s is None or not self.requests else self.server_cpu_s / self.requests * 1e6


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")


_RUNS = 0


def run(base_url: str, script_path: Path, connections: int, duration_s: float, *, threads: int = 1,
        timeout_s: int = 10, watch_pids: tuple[int, ...] = ()) -> WrkResult:
    """One wrk run; raises if wrk fails or prints no summary."""
    global _RUNS
    _RUNS += 1
    nonce = f"{os.getpid() % 100000}{_RUNS:04d}"
    threads = max(1, min(threads, connections))
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration_s))}s",
           "--timeout", f"{timeout_s}s", "-s", str(script_path), base_url, "--", nonce]
    server0 = sum(process_cpu_seconds(pid) for pid in watch_pids) if watch_pids else None
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60)
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    server1 = sum(process_cpu_seconds(pid) for pid in watch_pids) if watch_pids else None
    match = re.search(r"WRKJSON (\{.*\})", proc.stdout)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    out = json.loads(match.group(1))
    return WrkResult(
        requests=out["requests"], duration_s=out["duration_us"] / 1e6,
        errors=out["err_connect"] + out["err_read"] + out["err_write"] + out["err_timeout"],
        bad_status=out["err_status"], p50_ms=out["p50_us"] / 1000, p99_ms=out["p99_us"] / 1000,
        max_ms=out["max_us"] / 1000,
        client_cpu_s=(usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime),
        server_cpu_s=None if server0 is None else server1 - server0)
