#!/usr/bin/env bash
# Benchmark: where every KiB of an agent goes. In one invocation, the same all-at-once
# cold start of AGENTS kanade agents (scenarios/bench-cold-start-051.toml, async-nats
# 0.51) is run by fleetsim (every measurement on) and by examples/bare_agents.rs (the
# profile's async-nats calls only: the floor), each twice:
#
#   1. plain, sampled every 100 ms from outside: the fleet process's RSS (and, at its
#      highest, /proc/PID/smaps by kind of mapping) and the kernel's memory for the
#      fleet's TCP sockets (`ss -tmne`, matched to the process by socket inode);
#   2. under heaptrack (Debian's /usr/bin/heaptrack, LD_PRELOAD), for the heap at its
#      peak, by allocation call stack.
#
# Each run starts its own embedded nats-server as a child process. heaptrack must see
# only the fleet's process: nats-server is a static Go binary (the dynamic linker, so
# LD_PRELOAD, never runs) and libheaptrack clears DUMP_HEAPTRACK_OUTPUT at start so no
# child reports into the fleet's file; the sampler checks every nats-server it sees
# (its /proc/PID/maps and environ name no heaptrack) and the report says so.
#
# The heap at the peak is attributed by call stack to categories by the rules of
# `classify` below (matching frames by crate, file and function; crate from the source
# path, Cargo.lock's registry crates and this repository's files), in bytes per agent.
# Writes results/bench/heap.md (tables, the commands, date and versions) and
# results/bench/heap.csv (category, fleetsim_bytes_per_agent, bare_bytes_per_agent,
# difference), and prints the markdown.
#
#   ./scripts/bench-heap.sh                 # 200 agents
#   AGENTS=500 ./scripts/bench-heap.sh
#   HEAP_KEEP=/tmp/heap ./scripts/bench-heap.sh   # keep the heaptrack files there
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
release="${CARGO_TARGET_DIR:-$root/target}/release"
NATS_SERVER_BIN="$(./scripts/provision-nats.sh | tail -n 1)"
export NATS_SERVER_BIN
for tool in heaptrack heaptrack_print ss zstd; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "bench-heap.sh: $tool is not installed (Debian: apt-get install heaptrack iproute2 zstd)" >&2
    exit 3
  fi
done
cargo build --release --quiet --bin fleetsim --example bare_agents

agents="${AGENTS:-200}"
out_dir="results/bench"
if [[ -n "${HEAP_KEEP:-}" ]]; then
  work="$HEAP_KEEP"
  mkdir -p "$work"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$out_dir"
scenario=scenarios/bench-cold-start-051.toml

# The sampler: runs a command, finds the fleet's process among it and its children by
# name, and every 100 ms reads its RSS and its TCP sockets' kernel memory.
cat > "$work/sampler.py" <<'PY'
import json, os, re, subprocess, sys, time

out, name, agents = sys.argv[1], sys.argv[2], int(sys.argv[3])
cmd = sys.argv[sys.argv.index("--") + 1:]

def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""

def descendants(pid):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            m = re.match(r"\d+ \((.*)\) \S (\d+)", read(f"/proc/{d}/stat"))
            if m:
                kids.setdefault(int(m.group(2)), []).append((int(d), m.group(1)))
    found, todo = [], [pid]
    while todo:
        for c, comm in kids.get(todo.pop(), []):
            found.append((c, comm))
            todo.append(c)
    return found

def status(pid):
    s = {}
    for line in read(f"/proc/{pid}/status").splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
            s[k] = int(v.split()[0])
        elif k == "Threads":
            s[k] = int(v)
    return s

def socket_inodes(pid):
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            m = re.match(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
        if m:
            inodes.add(m.group(1))
    return inodes

def tcp_sockets():
    """Every TCP socket's inode and skmem counters (`ss -tmne`)."""
    text = subprocess.run(["ss", "-tmneH"], capture_output=True, text=True).stdout
    socks, cur = {}, None
    for line in text.splitlines():
        if line and not line[0].isspace():
            cur = {}
            m = re.search(r"\bino:(\d+)", line)
            if m:
                socks[m.group(1)] = cur
        m = re.search(r"skmem:\(([^)]*)\)", line)
        if m and cur is not None:
            for kv in m.group(1).split(","):
                k = re.match(r"([a-z]+)(\d+)", kv)
                if k:
                    cur[k.group(1)] = int(k.group(2))
    return socks

def smaps(pid):
    """RSS by kind of mapping, KiB. Thread stacks: read-write anonymous memory right
    above a guard page of at most 64 KiB; glibc's thread arenas: read-write anonymous
    memory followed by its reserved rest, one end on a 64 MiB boundary."""
    maps, cur = [], None
    for line in read(f"/proc/{pid}/smaps").splitlines():
        m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
        if m:
            cur = {"start": int(m.group(1), 16), "end": int(m.group(2), 16),
                   "perms": m.group(3), "path": m.group(4), "rss": 0}
            maps.append(cur)
        elif line.startswith("Rss:") and cur is not None:
            cur["rss"] = int(line.split()[1])
    kinds = {}
    for i, m in enumerate(maps):
        path = m["path"]
        prev = maps[i - 1] if i else None
        nxt = maps[i + 1] if i + 1 < len(maps) else None
        guard_below = (prev and prev["perms"].startswith("---") and prev["end"] == m["start"]
                       and prev["end"] - prev["start"] <= 64 * 1024)
        reserved_above = nxt and nxt["perms"].startswith("---") and nxt["start"] == m["end"]
        if path == "[heap]":
            kind = "heap_brk"
        elif path == "[stack]":
            kind = "stack_main"
        elif path.startswith("/"):
            kind = "files"
        elif path.startswith("["):
            kind = "kernel_mappings"
        elif m["perms"].startswith("---"):
            kind = "reserved"
        elif guard_below and not reserved_above:
            kind = "stacks_threads"
        elif reserved_above and (m["start"] % (64 << 20) == 0 or nxt["end"] % (64 << 20) == 0):
            kind = "heap_arenas"
        else:
            kind = "anon_other"
        kinds[kind] = kinds.get(kind, 0) + m["rss"]
    return kinds

proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                        stdout=open(out + ".stdout", "w"), stderr=open(out + ".stderr", "w"))
samples, peak, fleet, servers = [], None, None, {}
t0 = time.monotonic()
while proc.poll() is None:
    desc = descendants(proc.pid)
    if fleet is None:
        fleet = proc.pid if os.path.basename(cmd[0]) == name else next(
            (p for p, comm in desc if comm == name), None)
    for p, comm in desc:
        if comm.startswith("nats-server") and p not in servers:
            maps = read(f"/proc/{p}/maps")
            if maps:
                servers[p] = {"heaptrack_in_maps": "heaptrack" in maps,
                              "heaptrack_in_environ": "heaptrack" in read(f"/proc/{p}/environ")}
    if fleet is not None:
        st = status(fleet)
        if st.get("VmRSS"):
            socks = tcp_sockets()
            mine = [socks[i] for i in socket_inodes(fleet) if i in socks]
            s = {"t": round(time.monotonic() - t0, 3), **st, "tcp_sockets": len(mine)}
            for k in ("r", "w", "t", "f", "o", "bl"):
                s["sk_" + k] = sum(x.get(k, 0) for x in mine)
            m = re.search(r"TCP:.*\bmem (\d+)", read("/proc/net/sockstat"))
            s["sockstat_tcp_pages"] = int(m.group(1)) if m else None
            if peak is None or st["VmRSS"] > peak["VmRSS"]:
                s["smaps_kib"] = smaps(fleet)
                peak = s
            samples.append(s)
    time.sleep(0.1)
full = [s for s in samples if s["tcp_sockets"] >= agents]
json.dump({
    "cmd": cmd, "exit": proc.returncode, "fleet_pid": fleet,
    "peak_rss_sample": peak,
    # The last sample with every agent's socket open: the fleet at (or just after)
    # all-ready, since both programs stop their agents at all-ready.
    "all_ready_sample": full[-1] if full else None,
    "max_skmem_sample": max(samples, key=lambda s: s["sk_r"] + s["sk_w"] + s["sk_f"], default=None),
    "servers": list(servers.values()),
    "samples": samples,
}, open(out, "w"), indent=1)
sys.exit(proc.returncode)
PY

run() { # label name -- command...
  local label="$1" name="$2"
  shift 3
  echo "== $label: $*" >&2
  if ! python3 "$work/sampler.py" "$work/$label.json" "$name" "$agents" -- "$@"; then
    echo "bench-heap.sh: $label exited non-zero (see $work/$label.json.stderr)" >&2
  fi
}
fleet_cmd=("$release/fleetsim" run "$scenario" --agents "$agents")
bare_cmd=("$release/examples/bare_agents" "$scenario" "$agents")
run fleetsim-plain fleetsim -- "${fleet_cmd[@]}" --out "$work/runs-plain"
run bare-plain bare_agents -- "${bare_cmd[@]}"
run fleetsim-heap fleetsim -- heaptrack -o "$work/fleetsim" "${fleet_cmd[@]}" --out "$work/runs-heap"
run bare-heap bare_agents -- heaptrack -o "$work/bare" "${bare_cmd[@]}"
for side in fleetsim bare; do
  heaptrack_print -f "$work/$side.zst" -p 0 -a 0 -T 0 -l 0 > "$work/$side.print" 2>&1 || true
done
fleet_run_dir="$(ls -td "$work/runs-plain"/*/ | head -n 1)"

python3 - "$work" "$agents" "$root" "$fleet_run_dir" "$NATS_SERVER_BIN" \
  "${fleet_cmd[*]}" "${bare_cmd[*]}" <<'PY'
import collections, csv, datetime, glob, json, os, re, subprocess, sys

work, agents, root, fleet_run_dir, nats_bin = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
fleet_cmd, bare_cmd = sys.argv[6], sys.argv[7]
rel = lambda s: s.replace(root + "/", "").replace(work + "/", "$work/")

# ---- heaptrack's data file, replayed --------------------------------------------------
def load(path):
    """The live allocations of each allocation site at the heap's peak and at all-ready.

    heaptrack's interpreted format: `s` strings, `i` instruction pointers (module, then
    function/file/line triples, innermost inlined frame first), `t` traces (ip, parent),
    `a` allocation sites (size, trace), `+`/`-` an allocation/free of a site, `c` a
    timestamp (ms). Replayed twice: once for the heap's total over time, once up to the
    two moments reported."""
    text = subprocess.run(["zstd", "-dc", path], capture_output=True, check=True).stdout
    S, IPS, TRACES, ALLOCS, events, stamps = [None], [None], [None], [], [], []
    for line in text.decode(errors="replace").split("\n"):
        if not line:
            continue
        k = line[0]
        if k == "+":
            events.append(int(line[2:], 16))
        elif k == "-":
            events.append(~int(line[2:], 16))
        elif k == "s":
            S.append(line.split(" ", 2)[2] if line.count(" ") >= 2 else "")
        elif k == "i":
            IPS.append([int(x, 16) for x in line.split()[1:]])
        elif k == "t":
            ip, parent = line.split()[1:3]
            TRACES.append((int(ip, 16), int(parent, 16)))
        elif k == "a":
            size, trace = line.split()[1:3]
            ALLOCS.append((int(size, 16), int(trace, 16)))
        elif k == "c":
            stamps.append((len(events), int(line[2:], 16)))
    totals, total = [], 0
    for e in events:
        total += ALLOCS[e][0] if e >= 0 else -ALLOCS[~e][0]
        totals.append(total)
    peak_at = max(range(len(totals)), key=totals.__getitem__, default=0)
    peak = totals[peak_at] if totals else 0
    ms = [0] * len(events)
    for (n, t), nxt in zip(stamps, stamps[1:] + [(len(events), None)]):
        ms[n:nxt[0]] = [t] * (nxt[0] - n)
    # The fleet at all-ready: both programs stop their agents then and the heap falls
    # far below its peak. The highest heap in the second before it first falls under
    # 30 % of the peak is the fleet as it stood at all-ready (the setup's transients
    # gone, the teardown not begun).
    low_at = next((n for n in range(peak_at, len(totals)) if totals[n] < 0.3 * peak), len(totals) - 1)
    window = [n for n in range(low_at, -1, -1) if ms[n] >= ms[low_at] - 1000] if totals else [0]
    ready_at = max(window, key=totals.__getitem__)
    snaps = {}
    counts = [0] * len(ALLOCS)
    for n, e in enumerate(events[: max(peak_at, ready_at) + 1]):
        counts[e if e >= 0 else ~e] += 1 if e >= 0 else -1
        if n in (peak_at, ready_at):
            snaps[n] = list(counts)
    return dict(S=S, IPS=IPS, TRACES=TRACES, ALLOCS=ALLOCS, end_ms=stamps[-1][1] if stamps else 0,
                at={"peak": (snaps.get(peak_at, counts), peak, ms[peak_at] if ms else 0),
                    "ready": (snaps.get(ready_at, counts), totals[ready_at] if totals else 0,
                              ms[ready_at] if ms else 0)})

# ---- which crate a frame is in ---------------------------------------------------------
def crate_index():
    """Relative source path -> the crates having it: this repository (fleetsim;
    examples/bare_agents.rs is `bare_agents`) and every registry crate in Cargo.lock.
    heaptrack names many files by their path inside their crate (`src/lib.rs`)."""
    index = collections.defaultdict(set)
    for base, _, files in os.walk(os.path.join(root, "src")):
        for f in files:
            index[os.path.relpath(os.path.join(base, f), root)].add("fleetsim")
    index["examples/bare_agents.rs"] = {"bare_agents"}
    lock = open(os.path.join(root, "Cargo.lock")).read()
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    regs = glob.glob(os.path.join(home, "registry/src/*"))
    for name, version in re.findall(r'name = "([^"]+)"\nversion = "([^"]+)"', lock):
        for reg in regs:
            d = os.path.join(reg, f"{name}-{version}")
            for base, _, files in os.walk(os.path.join(d, "src")):
                for f in files:
                    index[os.path.relpath(os.path.join(base, f), d)].add(name)
    return index

INDEX = crate_index()

def crate_of_file(file):
    """The crates a frame's source file may belong to."""
    if not file:
        return {"system"}
    if file.startswith("/rustc/") or file.startswith("library/"):
        return {"std"}
    m = re.search(r"/rust/deps/([A-Za-z0-9_-]+?)-\d", file)
    if m:
        return {m.group(1)}
    m = re.search(r"/registry/src/[^/]+/([A-Za-z0-9_-]+?)-\d+\.\d+\.\d+[^/]*/", file)
    if m:
        return {m.group(1)}
    if file.startswith(root + "/"):
        return INDEX.get(file[len(root) + 1:], {"fleetsim"})
    if file.startswith("/") or file.startswith("."):
        return {"system"}
    return INDEX.get(file, {"unknown"})

def frames_of(trace, S, IPS, TRACES, cache):
    """Innermost first: (crate, function, file) for every frame, inlined ones included.
    A path several crates have (`src/lib.rs`) takes the crate of the nearest frame
    whose crate is certain and among its candidates (a function mostly calls its own
    crate's)."""
    raw = []
    while trace:
        ip, parent = TRACES[trace]
        if ip not in cache:
            rec, fr = IPS[ip], []
            if len(rec) <= 2:
                fr.append(("?", S[rec[1]] if len(rec) > 1 else ""))
            for k in range(2, len(rec) - 2, 3):
                fr.append((S[rec[k]], S[rec[k + 1]]))
            cache[ip] = fr
        raw.extend(cache[ip])
        trace = parent
    cands = [crate_of_file(f) for _, f in raw]
    out = []
    for i, c in enumerate(cands):
        pick = next(iter(c)) if len(c) == 1 else None
        for d in range(1, len(cands)):
            if pick:
                break
            for j in (i + d, i - d):
                if 0 <= j < len(cands) and len(cands[j]) == 1 and cands[j] <= c:
                    pick = next(iter(cands[j]))
                    break
        out.append((pick or "ambiguous", raw[i][0], raw[i][1]))
    return out

# ---- the categories and their rules ----------------------------------------------------
CATEGORIES = [
    ("conn_read", "per connection", "async-nats read buffer (and the message payloads it still holds)"),
    ("conn_write", "per connection", "async-nats write buffers"),
    ("conn_chan", "per connection", "async-nats command and event channels"),
    ("conn_task", "per connection", "async-nats connection tasks (handler, event loop)"),
    ("conn_io", "per connection", "tokio I/O registration of the socket"),
    ("conn_other", "per connection", "async-nats connection, other (connector, handler, server info, parsed messages)"),
    ("sub_chan", "per subscription", "async-nats subscriber channels (tokio mpsc blocks, messages queued)"),
    ("sub_map", "per subscription", "async-nats handler maps (subscriptions, request replies)"),
    ("js", "JetStream", "async-nats JetStream (bound stores, consumers, stream info, requests)"),
    ("agent_task", "per agent task", "agent task (tokio task cell: the agent's future inline)"),
    ("agent_boxed", "per agent task", "agent's boxed futures and streams (setup, tasks, calls, publishes)"),
    ("agent_other", "per agent task", "agent's other state (bound stores, names, channels, collections)"),
    ("m_hist", "fleetsim measurement", "histograms (metrics.rs, hdrhistogram)"),
    ("m_series", "fleetsim measurement", "time series and API tap (timeseries.rs)"),
    ("m_progress", "fleetsim measurement", "progress line (progress.rs)"),
    ("m_roster", "fleetsim measurement", "roster (agent states and counts)"),
    ("run", "fleetsim run", "run machinery (scenario, broker, provisioning, results)"),
    ("tokio", "tokio runtime", "tokio runtime (workers, drivers, timers, blocking pool)"),
    ("other", "other", "other (std, tracing, libc, unattributed)"),
]
OWNERS = {"fleetsim", "bare_agents", "async-nats", "hdrhistogram"}

def classify(frames):
    """The category of one allocation call stack (frames innermost first).

    The owner is the innermost frame in fleetsim, bare_agents, async-nats or
    hdrhistogram: the library frames inside it (tokio, bytes, hashbrown, std...) say
    what was allocated, the owner's file and function say for whom:
    - async-nats, file jetstream/*: js. A tokio spawn inside: conn_task. tokio's I/O
      driver inside: conn_io. connection.rs `new`/`poll_read_op`/`try_read_op` growing a
      BytesMut: conn_read; connection.rs functions named *write*: conn_write; other
      connection.rs: conn_other. A tokio mpsc channel made in client.rs (`subscribe`):
      sub_chan, made in lib.rs (`connect_with_options`): conn_chan. A tokio mpsc send
      from lib.rs (the handler delivering to a subscriber): sub_chan, from client.rs
      (a call queueing a command): conn_chan. hashbrown under lib.rs: sub_map. Else
      conn_other.
    - hdrhistogram, or fleetsim's metrics.rs: m_hist; timeseries.rs: m_series;
      progress.rs: m_progress; fleet/roster.rs: m_roster.
    - fleetsim outside fleet/ with no src/fleet/agent frame further out: tokio when a
      tokio runtime/ frame or mio is inside, else run.
    - fleetsim's agent code (src/fleet/), or bare_agents: a tokio spawn inside:
      agent_task; a Box (std boxed.rs) inside: agent_boxed; else agent_other.
    - No owner: tokio when a tokio runtime/ frame is on the stack, else other."""
    own = next((i for i, f in enumerate(frames) if f[0] in OWNERS), None)
    if own is None:
        return "tokio" if any(c == "tokio" and "runtime/" in fl for c, _, fl in frames) else "other"
    crate, fn, fl = frames[own]
    inner = frames[:own]
    def has(crate_name, file_part):
        return any(c == crate_name and file_part in f for c, _, f in inner)
    spawn = has("tokio", "task/spawn.rs") or has("tokio", "join_set.rs") or has("tokio", "runtime/task/")
    mpsc_new = any(c == "tokio" and "sync/mpsc/" in f and n.startswith("channel") for c, n, f in inner)
    mpsc_send = has("tokio", "sync/mpsc/") and not mpsc_new
    if crate == "async-nats":
        if "jetstream/" in fl:
            return "js"
        if spawn:
            return "conn_task"
        if has("tokio", "runtime/io/"):
            return "conn_io"
        if fl.endswith("connection.rs"):
            if has("bytes", "bytes_mut.rs") and fn in ("new", "poll_read_op", "try_read_op"):
                return "conn_read"
            if "write" in fn:
                return "conn_write"
            return "conn_other"
        if mpsc_new:
            return "sub_chan" if fl.endswith("client.rs") else "conn_chan"
        if mpsc_send:
            return "sub_chan" if fl.endswith("lib.rs") else "conn_chan"
        if has("hashbrown", "") and fl.endswith("lib.rs"):
            return "sub_map"
        return "conn_other"
    if crate == "hdrhistogram" or (crate == "fleetsim" and fl.endswith("metrics.rs")):
        return "m_hist"
    if crate == "fleetsim":
        for suffix, key in (("timeseries.rs", "m_series"), ("progress.rs", "m_progress"),
                            ("fleet/roster.rs", "m_roster")):
            if fl.endswith(suffix):
                return key
        agent_code = "fleet/" in fl or any(
            c == "fleetsim" and "fleet/agent/" in f for c, _, f in frames[own:])
        if not agent_code:
            return "tokio" if has("tokio", "runtime/") or has("mio", "") else "run"
    if spawn:
        return "agent_task"
    if any(c == "std" and f.endswith("boxed.rs") for c, _, f in inner):
        return "agent_boxed"
    return "agent_other"

def categorize(data, moment):
    """Live bytes per category at `moment` ("peak" or "ready")."""
    S, IPS, TRACES, ALLOCS = data["S"], data["IPS"], data["TRACES"], data["ALLOCS"]
    counts, total, at_ms = data["at"][moment]
    by_trace = collections.defaultdict(lambda: [0, 0, collections.Counter()])
    for (size, trace), n in zip(ALLOCS, counts):
        if n:
            t = by_trace[trace]
            t[0] += size * n
            t[1] += n
            t[2][size] += n
    cats = collections.defaultdict(lambda: {"bytes": 0, "allocs": 0, "sizes": collections.Counter(), "stacks": []})
    cache = data.setdefault("frame_cache", {})
    for trace, (b, n, sizes) in by_trace.items():
        frames = frames_of(trace, S, IPS, TRACES, cache)
        c = cats[classify(frames)]
        c["bytes"] += b
        c["allocs"] += n
        c["sizes"].update(sizes)
        c["stacks"].append((b, frames))
    return cats, total, at_ms

# ---- the report ------------------------------------------------------------------------
sides = {}
for side in ("fleetsim", "bare"):
    data = load(f"{work}/{side}.zst")
    cats, peak, peak_ms = categorize(data, "peak")
    rcats, ready, ready_ms = categorize(data, "ready")
    plain = json.load(open(f"{work}/{side}-plain.json"))
    heap_run = json.load(open(f"{work}/{side}-heap.json"))
    sides[side] = dict(cats=cats, peak=peak, peak_ms=peak_ms, rcats=rcats, ready=ready,
                       ready_ms=ready_ms, end_ms=data["end_ms"], plain=plain, heap_run=heap_run)
    del data

# Whole-process peak RSS as each program reports it (getrusage), from the plain runs.
manifest = json.load(open(os.path.join(fleet_run_dir, "manifest.json")))
sides["fleetsim"]["rss_kib"] = manifest["process"]["max_rss_kib"]
bare_line = open(f"{work}/bare-plain.json.stdout").read().split()
bare_kv = dict(kv.split("=", 1) for kv in bare_line if "=" in kv)
sides["bare"]["rss_kib"] = int(bare_kv.get("peak_rss_kib", 0))

def slab_sizes():
    """Kernel objects each TCP socket holds beside its buffers (bytes, /proc/slabinfo)."""
    sizes = {}
    try:
        for line in open("/proc/slabinfo"):
            p = line.split()
            if p and p[0] in ("TCP", "sock_inode_cache", "filp", "dentry", "eventpoll_epi"):
                sizes[p[0]] = int(p[3])
    except OSError:
        pass
    return sizes
SLAB = slab_sizes()
per_socket_objects = sum(SLAB.values())

def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except Exception:
        return "?"
lock = open(os.path.join(root, "Cargo.lock")).read()
def locked(name):
    return ", ".join(re.findall(rf'name = "{name}"\nversion = "([^"]+)"', lock))

kib = lambda b: b / 1024
per = lambda b: b / agents
md = []
w = md.append
w("# Where an agent's memory goes\n")
w(f"`./scripts/bench-heap.sh` (AGENTS={agents}), {datetime.date.today().isoformat()}: an all-at-once "
  f"cold start of {agents} kanade agents (async-nats 0.51, `scenarios/bench-cold-start-051.toml`) by "
  f"fleetsim with every measurement on and by `examples/bare_agents` (the profile's async-nats calls "
  f"only), each run twice: plain, sampled every 100 ms from outside (RSS, smaps, the fleet's TCP "
  f"sockets), and under heaptrack (the heap by allocation call stack at its peak). Each run starts "
  f"its own embedded nats-server, which is not profiled (checked below). Commands:\n")
w("```text")
w(f"{rel(fleet_cmd)} --out $work/runs-plain")
w(f"{rel(bare_cmd)}")
w(f"heaptrack -o $work/fleetsim {rel(fleet_cmd)} --out $work/runs-heap")
w(f"heaptrack -o $work/bare {rel(bare_cmd)}")
w("```\n")
w(f"Versions: {version(['heaptrack', '--version'])}; {version(['rustc', '-V'])}; nats-server "
  f"{version([nats_bin, '--version']).replace('nats-server: ', '')}; async-nats {locked('async-nats')}; "
  f"tokio {locked('tokio')}; hdrhistogram {locked('hdrhistogram')}; kernel {os.uname().release}.\n")

checks = []
for side in ("fleetsim", "bare"):
    for s in sides[side]["heap_run"]["servers"]:
        checks.append(s["heaptrack_in_maps"] or s["heaptrack_in_environ"])
w(f"The embedded nats-server under heaptrack: {len(checks)} server process(es) seen, "
  f"{'none' if not any(checks) else 'SOME'} with libheaptrack mapped or heaptrack in its "
  f"environment (it is a static Go binary: no dynamic linker, so no LD_PRELOAD).\n")

w("## The heap by category (bytes per agent)\n")
w(f"Each category's live bytes divided by {agents}, at two moments of each heaptrack run: the "
  f"heap's peak (what the peak RSS has to hold) and all-ready (the highest heap in the second "
  f"before the teardown, which both programs begin at all-ready: the setup's transient futures "
  f"gone). Fixed costs (histograms, runtime, provisioning) are divided by the fleet size too: "
  f"the MiB column says how big they are, and they weigh less per agent in a larger fleet. "
  f"Matching rules: `classify` in `scripts/bench-heap.sh`.\n")
w("| group | category | fleetsim peak | bare peak | fleetsim − bare, peak | fleetsim all-ready | "
  "bare all-ready | fleetsim − bare, all-ready | fleetsim MiB, peak |")
w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
rows = []
group_tot = collections.OrderedDict()
get = lambda side, which, key: sides[side][which].get(key, {"bytes": 0})["bytes"]
for key, group, label in CATEGORIES:
    f, b = get("fleetsim", "cats", key), get("bare", "cats", key)
    fr, br = get("fleetsim", "rcats", key), get("bare", "rcats", key)
    rows.append((key, group, label, f, b, fr, br))
    g = group_tot.setdefault(group, [0, 0, 0, 0])
    for i, v in enumerate((f, b, fr, br)):
        g[i] += v
    w(f"| {group} | {label} | {per(f):,.0f} | {per(b):,.0f} | {per(f - b):+,.0f} | {per(fr):,.0f} | "
      f"{per(br):,.0f} | {per(fr - br):+,.0f} | {f / 1048576:.2f} |")
ft, bt = sides["fleetsim"]["peak"], sides["bare"]["peak"]
frt, brt = sides["fleetsim"]["ready"], sides["bare"]["ready"]
w(f"| **total** | **heap** | **{per(ft):,.0f}** | **{per(bt):,.0f}** | **{per(ft - bt):+,.0f}** | "
  f"**{per(frt):,.0f}** | **{per(brt):,.0f}** | **{per(frt - brt):+,.0f}** | **{ft / 1048576:.2f}** |\n")
w("By group:\n")
w("| group | fleetsim peak | bare peak | fleetsim − bare, peak | fleetsim all-ready | bare all-ready | "
  "fleetsim − bare, all-ready |")
w("|---|---:|---:|---:|---:|---:|---:|")
for group, (f, b, fr, br) in group_tot.items():
    w(f"| {group} | {per(f):,.0f} | {per(b):,.0f} | {per(f - b):+,.0f} | {per(fr):,.0f} | {per(br):,.0f} | "
      f"{per(fr - br):+,.0f} |")
w("")
for side in ("fleetsim", "bare"):
    d = sides[side]
    m = re.search(r"peak heap memory consumption: (\S+)", open(f"{work}/{side}.print").read())
    w(f"- {side}: heap peak {d['peak'] / 1048576:.1f} MiB at {d['peak_ms'] / 1000:.1f} s (heaptrack_print: "
      f"{m.group(1) if m else '?'}B), all-ready {d['ready'] / 1048576:.1f} MiB at {d['ready_ms'] / 1000:.1f} s, "
      f"of a {d['end_ms'] / 1000:.1f} s run under heaptrack.")
w("")

# What sizes the per-agent allocations are: the task cell is the agent future's size.
w("Allocation sizes behind the per-agent rows (size × live count at the peak, largest first):\n")
w("| category | fleetsim | bare |\n|---|---|---|")
for key in ("agent_task", "agent_boxed", "conn_task", "sub_chan", "conn_read"):
    cells = []
    for side in ("fleetsim", "bare"):
        c = sides[side]["cats"].get(key)
        if not c:
            cells.append("")
            continue
        top = sorted(c["sizes"].items(), key=lambda kv: -kv[0] * kv[1])[:4]
        cells.append(", ".join(f"{s:,} B × {n}" for s, n in top))
    w(f"| {dict((k, l) for k, _, l in CATEGORIES)[key]} | {cells[0]} | {cells[1]} |")
w("")

w("## The kernel's share: TCP socket memory\n")
w(f"From the plain runs: `ss -tmne` for the fleet process's own sockets (matched by inode), "
  f"at the last sample with every agent's socket open (the fleet at all-ready: both programs stop "
  f"their agents then) and at the sample where the sockets held most. `r` is data received and not "
  f"yet read, `w` data queued to send, `f` memory charged to the socket but unused (forward "
  f"allocation). Beside the buffers each socket is kernel objects of fixed size "
  f"({', '.join(f'{k} {v} B' for k, v in SLAB.items())}: {per_socket_objects:,} B per socket, "
  f"from /proc/slabinfo). None of it is in the process's RSS.\n")
w("| | fleetsim | bare |\n|---|---:|---:|")
def sk(sample, field):
    return sample.get(field, 0) if sample else 0
for title, pick in (("all-ready", "all_ready_sample"), ("most held", "max_skmem_sample")):
    fs, bs = sides["fleetsim"]["plain"][pick], sides["bare"]["plain"][pick]
    w(f"| {title}: fleet sockets | {sk(fs, 'tcp_sockets')} | {sk(bs, 'tcp_sockets')} |")
    for field, name in (("sk_r", "receive queues (r)"), ("sk_w", "send queues (w)"), ("sk_f", "forward allocation (f)")):
        w(f"| {title}: {name}, B/agent | {per(sk(fs, field)):,.0f} | {per(sk(bs, field)):,.0f} |")
    objs = lambda s: sk(s, "tcp_sockets") * per_socket_objects
    w(f"| {title}: socket objects, B/agent | {per(objs(fs)):,.0f} | {per(objs(bs)):,.0f} |")
    tot = lambda s: sk(s, "sk_r") + sk(s, "sk_w") + sk(s, "sk_f") + objs(s)
    w(f"| {title}: **kernel total, B/agent** | **{per(tot(fs)):,.0f}** | **{per(tot(bs)):,.0f}** |")
    w(f"| {title}: /proc/net/sockstat TCP mem (whole machine, the broker's side too), KiB | "
      f"{(sk(fs, 'sockstat_tcp_pages') or 0) * 4} | {(sk(bs, 'sockstat_tcp_pages') or 0) * 4} |")
w("")

w("## RSS reconciliation\n")
w("Peak RSS is the process's own `getrusage` figure (as `bench.sh` reports it) from the plain run; "
  "the mappings are `/proc/PID/smaps` at the sampler's highest RSS (100 ms samples, so it may miss "
  "the very top); the heap is heaptrack's peak from the other run (the same work, slower). "
  "Thread stacks: read-write memory right above a guard page; malloc's arenas: glibc's 64 MiB "
  "thread heaps; the main arena is the brk heap.\n")
w("| KiB per agent | fleetsim | bare | fleetsim − bare |\n|---|---:|---:|---:|")
def sm(side, kind):
    s = sides[side]["plain"]["peak_rss_sample"] or {}
    return s.get("smaps_kib", {}).get(kind, 0) * 1024
def line(title, f, b):
    w(f"| {title} | {f / 1024 / agents:,.1f} | {b / 1024 / agents:,.1f} | {(f - b) / 1024 / agents:+,.1f} |")
line("**peak RSS (getrusage)**", sides["fleetsim"]["rss_kib"] * 1024, sides["bare"]["rss_kib"] * 1024)
smap_rss = {}
for side in ("fleetsim", "bare"):
    s = sides[side]["plain"]["peak_rss_sample"] or {}
    smap_rss[side] = s.get("VmRSS", 0) * 1024
line("RSS at the sampler's highest sample", smap_rss["fleetsim"], smap_rss["bare"])
for kind, title in (("files", "files mapped (the binary, libc)"), ("stacks_threads", "thread stacks"),
                    ("stack_main", "main thread stack"), ("heap_brk", "malloc main arena (brk heap)"),
                    ("heap_arenas", "malloc thread arenas"), ("anon_other", "other anonymous (large allocations mmap'd by malloc)")):
    line(title, sm("fleetsim", kind), sm("bare", kind))
heap_maps = {s: sm(s, "heap_brk") + sm(s, "heap_arenas") + sm(s, "anon_other") for s in ("fleetsim", "bare")}
line("malloc's memory, all (main arena + arenas + other anonymous)", heap_maps["fleetsim"], heap_maps["bare"])
line("heap in use at its peak (heaptrack)", sides["fleetsim"]["peak"], sides["bare"]["peak"])
line("malloc's memory not in use (fragmentation, freed and kept, headers)",
     heap_maps["fleetsim"] - sides["fleetsim"]["peak"], heap_maps["bare"] - sides["bare"]["peak"])
w("")
w("The heap in use comes from the heaptrack run, malloc's memory from the plain run: heaptrack "
  "slows the fleet, so more (or fewer) agents are mid-setup at once at its peak, and a negative "
  "'not in use' means the two runs' peaks differ by more than malloc's own overhead, which is then "
  "too small to see here. Kernel socket memory (above) comes on top of RSS: it is not mapped into "
  "the process.\n")

w("## Largest allocation sites per category\n")
w("At the heap's peak, the three largest call stacks of each category above 1 KiB per agent: the "
  "owner frame (the innermost fleetsim, bare_agents, async-nats or hdrhistogram frame) and two "
  "callers, then the library frames inside it (B/agent):\n")
for side in ("fleetsim", "bare"):
    cats = sides[side]["cats"]
    w(f"### {side}\n")
    for key, group, label in CATEGORIES:
        c = cats.get(key)
        if not c or per(c["bytes"]) < 1024:
            continue
        w(f"- **{label}** ({per(c['bytes']):,.0f} B/agent, {c['allocs']:,} live allocations)")
        for b, frames in sorted(c["stacks"], key=lambda x: -x[0])[:3]:
            own = next((i for i, f in enumerate(frames) if f[0] in OWNERS), len(frames))
            outer = [f for f in frames[own:] if f[0] not in ("std", "system")][:3]
            inner = [f for f in frames[:own] if f[0] not in ("std", "system")][-2:]
            show = lambda f: f"{f[0]}:{f[1][:40]} ({os.path.basename(f[2])})"
            w(f"  - {per(b):,.0f}: " + " ← ".join(show(f) for f in outer)
              + (f" [inside: {', '.join(show(f) for f in inner)}]" if inner else ""))
    w("")

open(os.path.join(root, "results/bench/heap.md"), "w").write("\n".join(md) + "\n")
with open(os.path.join(root, "results/bench/heap.csv"), "w", newline="") as f:
    out = csv.writer(f)
    # The first four columns: at the heap's peak; the last three: at all-ready.
    out.writerow(["category", "fleetsim_bytes_per_agent", "bare_bytes_per_agent", "difference",
                  "fleetsim_all_ready", "bare_all_ready", "difference_all_ready"])
    for key, group, label, fb, bb, fr, br in rows:
        out.writerow([key, round(per(fb)), round(per(bb)), round(per(fb - bb)),
                      round(per(fr)), round(per(br)), round(per(fr - br))])
    out.writerow(["heap_total", round(per(ft)), round(per(bt)), round(per(ft - bt)),
                  round(per(frt)), round(per(brt)), round(per(frt - brt))])
    out.writerow(["peak_rss", round(sides["fleetsim"]["rss_kib"] * 1024 / agents),
                  round(sides["bare"]["rss_kib"] * 1024 / agents),
                  round((sides["fleetsim"]["rss_kib"] - sides["bare"]["rss_kib"]) * 1024 / agents), "", "", ""])
    # The kernel's TCP memory: where the sockets held most, and at all-ready.
    ktot = lambda s: (sk(s, "sk_r") + sk(s, "sk_w") + sk(s, "sk_f") + sk(s, "tcp_sockets") * per_socket_objects)
    kf = [ktot(sides[x]["plain"][k]) for k in ("max_skmem_sample", "all_ready_sample") for x in ("fleetsim", "bare")]
    out.writerow(["kernel_tcp", round(per(kf[0])), round(per(kf[1])), round(per(kf[0] - kf[1])),
                  round(per(kf[2])), round(per(kf[3])), round(per(kf[2] - kf[3]))])
PY
cat "$out_dir/heap.md"
