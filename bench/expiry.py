#!/usr/bin/env python3
"""What expiring records cost, on one server (BENCHMARKS.md, "Write rules").

  python3 bench/expiry.py [--redis] [--records 100000] [--binary target/release/mesh-records]

1. Starts the server on bench/config-expiry.toml (with --redis: on the local Redis, keys under
   benchexp:, deleted first).
2. Fills --records records under bench:ttl: through the admin API (8 keep-alive connections):
   each expires 120 s after its write.
3. Idle, with them all live and none due: server (and Redis) CPU over 10 s, i.e. what the
   sweeps cost while nothing expires.
4. mesh-bench records --connections 100 --duration 10 on records whose exposure has a ttl too
   (each write moves a deadline): writes per CPU-second.
5. Waits for the expiry wave: CPU (server + Redis) from the first expiry to the last, counted
   from the server's mesh_records_expired_total (all of it: the idle rate of step 3 is part).
Prints one JSON line.
"""
import argparse, http.client, json, os, re, subprocess, sys, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")


def cpu(pid):
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def redis_pid():
    out = subprocess.run(["pgrep", "-x", "redis-server"], capture_output=True, text=True).stdout
    return int(out.split()[0]) if out.strip() else None


def metric(port, name):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    m = re.search(rf"^{name}(?:_total)? (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def fill(port, count, threads=8):
    def work(start):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": "Bearer bench-admin", "Content-Type": "application/json"}
        for n in range(start, count, threads):
            body = json.dumps({"n": n, "pad": "x" * 50})
            conn.request("PUT", f"/api/records/bench:ttl:{n}", body, headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                sys.exit(f"fill: {resp.status} for bench:ttl:{n}")
    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", action="store_true")
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/mesh-records"))
    ap.add_argument("--bench", default=os.path.join(ROOT, "target/release/mesh-bench"))
    ap.add_argument("--port", type=int, default=3195)
    args = ap.parse_args()
    config = os.path.join(ROOT, "bench/config-expiry.toml")
    env = dict(os.environ, MESH_PORT=str(args.port), RUST_LOG="warn")
    rpid = None
    if args.redis:
        text = open(config).read().replace('backend = "memory"', 'backend = "redis"')
        config = "/tmp/mesh-config-expiry-redis.toml"
        open(config, "w").write(text)
        subprocess.run("redis-cli --scan --pattern 'benchexp:*' | xargs -r -n 1000 redis-cli del",
                       shell=True, stdout=subprocess.DEVNULL)
        rpid = redis_pid()
    server = subprocess.Popen([args.binary, "--config", config], env=env)
    try:
        for _ in range(100):
            try:
                metric(args.port, "mesh_records_expired")
                break
            except OSError:
                time.sleep(0.1)
        started = time.time()
        fill(args.port, args.records)
        filled = time.time()
        # The fill's record actors linger 5 s (record_linger_ms), then retire: not idle yet.
        time.sleep(12)
        idle_s = 10
        before = cpu(server.pid), cpu(rpid)
        time.sleep(idle_s)
        after = cpu(server.pid), cpu(rpid)
        idle = {"server_cpu_per_s": (after[0] - before[0]) / idle_s,
                "redis_cpu_per_s": (after[1] - before[1]) / idle_s}
        pids = ["--server-pid", str(server.pid)] + (["--server-pid", str(rpid)] if rpid else [])
        out = subprocess.run([args.bench, "records", "--connections", "100", "--duration", "10",
                              "--url", f"ws://127.0.0.1:{args.port}/ws"] + pids,
                             capture_output=True, text=True).stdout.strip().splitlines()
        records = json.loads(out[-1]) if out else None
        # The wave: sample once a second until every filled record expired.
        samples = []
        deadline = started + 120 + 60
        while time.time() < deadline:
            expired = metric(args.port, "mesh_records_expired")
            samples.append((time.time(), expired, cpu(server.pid), cpu(rpid)))
            if expired >= args.records:
                break
            time.sleep(1)
        moving = [s for i, s in enumerate(samples) if i > 0 and s[1] > samples[i - 1][1]]
        first = next((samples[i - 1] for i in range(1, len(samples)) if samples[i][1] > samples[i - 1][1]), None)
        last = moving[-1] if moving else None
        wave = None
        if first and last:
            secs = last[0] - first[0]
            server_cpu = last[2] - first[2]
            redis_cpu = last[3] - first[3]
            count = last[1] - first[1]
            wave = {"expired": count, "seconds": round(secs, 1),
                    "server_cpu_s": round(server_cpu, 3), "redis_cpu_s": round(redis_cpu, 3),
                    "server_us_per_expiry": round(server_cpu / count * 1e6, 1),
                    "redis_us_per_expiry": round(redis_cpu / count * 1e6, 1),
                    "latest_after_deadline_s": round(last[0] - (filled + 120), 1)}
        print(json.dumps({"store": "redis" if args.redis else "memory", "records": args.records,
                          "fill_s": round(filled - started, 1), "idle": idle, "wave": wave,
                          "records_scenario": records}))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
