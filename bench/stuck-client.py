#!/usr/bin/env python3
"""A WebSocket client that subscribes to a record and then never reads (the worst slow
consumer), with a 4 KiB receive buffer so the kernel cannot hide it. Prints how long the server
took to end the connection. Usage: stuck-client.py HOST PORT RECORD [MAX_SECONDS]"""
import json, os, socket, sys, time

host, port, record = sys.argv[1], int(sys.argv[2]), sys.argv[3]
limit = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
assert host in ("127.0.0.1", "localhost", "::1"), "loopback only"

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect((host, port))
s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
payload = json.dumps({"id": 1, "command": "mesh/subscribe-record",
                      "payload": {"recordId": record, "mode": "patch"}}).encode()
mask = os.urandom(4)
frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
s.sendall(frame)
seen = b""
while b"mesh/subscribe-record" not in seen:
    seen += s.recv(1024)
start = time.time()
print(f"stuck-client: subscribed to {record}; not reading from now on", flush=True)
# Not reading: watch the socket's TCP state in /proc/net/tcp instead (ESTABLISHED is 01;
# after the server shuts the connection down it becomes CLOSE_WAIT or disappears after a RST).
local_port = s.getsockname()[1]

def established():
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == local_port:
                return fields[3] == "01"
    return False

while time.time() - start < limit:
    if not established():
        break
    time.sleep(0.1)
else:
    print(f"stuck-client: still connected after {limit:.0f} s", flush=True)
    sys.exit(1)
print(f"stuck-client: server ended the connection after {time.time() - start:.1f} s", flush=True)
