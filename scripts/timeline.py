#!/usr/bin/env python3
"""A timeline of each write through a server, from the kernel's syscall tracepoints.

For every publish the server reads (a successful recvfrom on the writer's socket, the one that
reads most often), how long until its first, median, 99th-percentile and last sendto: the
fan-out of that write to the subscribers' sockets. Prints medians and tails over all writes.

    perf record -e syscalls:sys_enter_sendto -e syscalls:sys_enter_recvfrom \\
        -e syscalls:sys_exit_recvfrom -p <server pid> -o tl.data -- sleep 3
    perf script -i tl.data -F tid,time,event,trace > tl.txt
    scripts/timeline.py tl.txt

Run it during `mesh-bench fanout --rate N` (open loop, so writes do not overlap).
"""
import collections
import statistics
import sys


def quantile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main(path):
    events, entered = [], {}
    for line in open(path):
        parts = line.split()
        if len(parts) < 4:
            continue
        tid, when, name = int(parts[0]), float(parts[1].rstrip(":")), parts[2]
        if name.startswith("syscalls:sys_enter_recvfrom"):
            entered[tid] = (when, parts[4].rstrip(","))
        elif name.startswith("syscalls:sys_exit_recvfrom"):
            read = int(parts[3], 16)
            if read < 1 << 63 and tid in entered:  # not an error (WouldBlock)
                events.append((entered[tid][0], "read", tid, entered[tid][1]))
        elif name.startswith("syscalls:sys_enter_sendto"):
            events.append((when, "send", tid, parts[4].rstrip(",")))
    events.sort()
    reads = collections.Counter(fd for _, kind, _, fd in events if kind == "read")
    if not reads:
        sys.exit("no successful recvfrom in the trace")
    writer_fd = reads.most_common(1)[0][0]
    writes, current = [], None
    for when, kind, tid, fd in events:
        if kind == "read" and fd == writer_fd:
            if current:
                writes.append(current)
            current = {"start": when, "sends": [], "threads": collections.Counter()}
        elif kind == "send" and current is not None:
            current["sends"].append(when)
            current["threads"][tid] += 1
    writes = [w for w in writes if len(w["sends"]) > 1]
    if not writes:
        sys.exit("no write with sends after it")
    print(f"writes {len(writes)}, sends per write (median) "
          f"{statistics.median(len(w['sends']) for w in writes)}")
    for label, q in [("first send", 0.0), ("50% sent", 0.5), ("99% sent", 0.99), ("last send", 1.0)]:
        ms = [(quantile(w["sends"], q) - w["start"]) * 1e3 for w in writes]
        print(f"{label:10s}: median {statistics.median(ms):.2f} ms, p90 {quantile(ms, 0.9):.2f}, "
              f"p99 {quantile(ms, 0.99):.2f}")
    threads = collections.Counter()
    for w in writes:
        threads.update(w["threads"])
    print("sends by thread:", dict(threads))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tl.txt")
