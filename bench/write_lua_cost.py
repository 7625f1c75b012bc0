#!/usr/bin/env python3
"""What write.lua alone costs Redis, without a server: one writer updates RECORDS records in
turn (each with one value and a patch, history on, as the server sends them), PER_CALL records
per EVALSHA, and reads Redis's own accounting (INFO commandstats) afterwards.

    python3 bench/write_lua_cost.py [PER_CALL] [RECORDS] [ROUNDS] [REDIS_PORT]

Prints the microseconds EVALSHA spent per write (Redis's clock, commands inside included) and
the wall time per write as the client saw it. Uses keys under `lua-cost:` and deletes them.
"""
import json
import socket
import sys
import time
from pathlib import Path

PER_CALL = int(sys.argv[1]) if len(sys.argv) > 1 else 20
RECORDS = int(sys.argv[2]) if len(sys.argv) > 2 else 100
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 150
PORT = int(sys.argv[4]) if len(sys.argv) > 4 else 6379
PREFIX = "lua-cost:"
LUA = Path(__file__).resolve().parent.parent / "src/store/redis/lua"
# As transport.rs builds it for one node.
SCRIPT = ("#!lua\nlocal PUBLISH = 'PUBLISH'\n" + (LUA / "common.lua").read_text()
          + (LUA / "write.lua").read_text())


def command(*args):
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        arg = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class Redis:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.file = self.sock.makefile("rb")

    def reply(self):
        line = self.file.readline()
        kind, rest = line[:1], line[1:].strip()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.file.read(size + 2)[:-2]
        if kind == b"*":
            return [self.reply() for _ in range(max(int(rest), 0))]
        return rest

    def call(self, *args):
        self.sock.sendall(command(*args))
        return self.reply()


def segment(n, version):
    """One record's keys and arguments, as RedisStore::write lays them out (one value)."""
    rid = f"{PREFIX}rec:{n}"
    keys = [f"{PREFIX}record{kind}:{rid}" for kind in
            ("", "-version", "-op", "-history", "-history-bytes", "-expires", "-expires")]
    value = json.dumps({"n": version, "pad": "x" * 100}, separators=(",", ":"))
    patch = "" if version == 1 else json.dumps(
        [{"op": "replace", "path": "/n", "value": version}], separators=(",", ":"))
    args = [version - 1, int(version > 1), f"{PREFIX}record-updates:{rid}", 1000 + version,
            100, 1048576, rid, "", 0, 1, version, value, patch]
    return keys, args


def main():
    redis = Redis(PORT)
    sha = redis.call("SCRIPT", "LOAD", SCRIPT).decode()
    calls = []
    for version in range(1, ROUNDS + 1):
        for first in range(0, RECORDS, PER_CALL):
            parts = [segment(n, version) for n in range(first, min(first + PER_CALL, RECORDS))]
            keys = [k for part in parts for k in part[0]]
            args = [a for part in parts for a in part[1]]
            calls.append(command("EVALSHA", sha, len(keys), *keys, "", "lua-cost", *args))
    redis.call("CONFIG", "RESETSTAT")
    started = time.time()
    redis.sock.sendall(b"".join(calls))
    for _ in calls:
        redis.reply()
    wall = time.time() - started
    stats = redis.call("INFO", "commandstats").decode()
    usec = next(int(line.split("usec=")[1].split(",")[0])
                for line in stats.splitlines() if line.startswith("cmdstat_evalsha:"))
    writes = RECORDS * ROUNDS
    print(f"{PER_CALL} records per call, {writes} writes: EVALSHA {usec / writes:.1f} us per write "
          f"(Redis's clock), {wall * 1e6 / writes:.1f} us per write wall")
    stale = redis.call("KEYS", PREFIX + "*")
    if stale:
        redis.call("DEL", *stale)


if __name__ == "__main__":
    main()
