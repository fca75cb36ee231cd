#!/usr/bin/env python3
"""Badly behaved clients of the gateway for tests/system/gateway_limits_test.sh.

Raw sockets, frames written by hand (docs/protocol.md section 1), the few
Protobuf fields needed encoded here (no generated code). Every command
prints one line of `key=value` figures on stdout for the shell to check.

  flood PORT TOKEN N ANNOUNCE TRICKLE_MS HOLD_S NODE_PID
      N sockets each send a 4-byte header announcing ANNOUNCE bytes, then
      one byte every TRICKLE_MS, for up to HOLD_S seconds. Meanwhile a
      normal client (connected and authenticated before the flood) sends
      Stats requests and times them. Counts how each socket ended: an
      Error frame with id 0 and its code, then the close.
  nonreader PORT TOKEN SECONDS NODE_PID
      One authenticated connection pipelines Stats requests for SECONDS
      without reading (its receive buffer small), sampling the node's RSS;
      then reads every answer.
  rid0 PORT TOKEN
      A request with id 0 is answered INVALID_ARGUMENT (id 0) and not run;
      the connection goes on.
"""
import errno
import os
import select
import socket
import struct
import sys
import time

BUSY, UNAVAILABLE, UNAUTHENTICATED, FRAME_TOO_LARGE = 8, 9, 11, 12
INVALID_ARGUMENT = 1


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_varint(num, value):
    return varint(num << 3) + varint(value)


def request(rid, body_field, body=b""):
    msg = field_varint(1, rid) + field_bytes(body_field, body)
    return struct.pack(">I", len(msg)) + msg


def auth(rid, token):
    return request(rid, 2, field_bytes(1, token.encode()))


def stats(rid):
    return request(rid, 11)


def read_varint(buf, pos):
    shift = value = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def parse(msg):
    """Top-level fields of a message: {num: value or bytes}."""
    fields = {}
    pos = 0
    while pos < len(msg):
        key, pos = read_varint(msg, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(msg, pos)
        elif wire == 2:
            size, pos = read_varint(msg, pos)
            value = msg[pos:pos + size]
            pos += size
        elif wire == 1:
            value, pos = msg[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = msg[pos:pos + 4], pos + 4
        else:
            raise ValueError("wire type %d" % wire)
        fields[num] = value
    return fields


def response(msg):
    """(request_id, body field number, error code or None, error text)."""
    f = parse(msg)
    rid = f.get(1, 0)
    body = next((n for n in f if n != 1), None)
    if body == 2:
        e = parse(f[2])
        return rid, 2, e.get(1, 0), e.get(2, b"").decode(errors="replace")
    return rid, body, None, ""


class Reader:
    """Frames out of a socket's byte stream."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.eof = False

    def frame(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                (size,) = struct.unpack(">I", self.buf[:4])
                if len(self.buf) >= 4 + size:
                    msg = self.buf[4:4 + size]
                    self.buf = self.buf[4 + size:]
                    return response(msg)
            left = max(0.0, deadline - time.monotonic())
            if self.eof:
                return None
            p = select.poll()  # select() cannot take fds over 1023
            p.register(self.sock, select.POLLIN)
            if not p.poll(left * 1000):
                return None
            try:
                data = self.sock.recv(1 << 20)
            except (ConnectionResetError, BlockingIOError):
                data = b""
            if not data:
                self.eof = True
                return None
            self.buf += data


def rss_kb(pid):
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def pct(values, p):
    if not values:
        return -1
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def flood(port, token, n, announce, trickle_ms, hold_s, node_pid):
    normal = connect(port)
    nr = Reader(normal)
    normal.sendall(auth(1, token))
    ok = nr.frame(5)
    assert ok and ok[1] == 3, "the normal client was not authenticated: %r" % (ok,)
    rss_before = rss_kb(node_pid)

    def normal_call(rid):
        t0 = time.monotonic()
        normal.sendall(stats(rid))
        r = nr.frame(10)
        return (time.monotonic() - t0) * 1000.0, r

    base = [normal_call(100 + i)[0] for i in range(20)]

    socks = []
    t_open = time.monotonic()
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        socks.append(s)
    # Wait until connected, then every socket announces its frame.
    header = struct.pack(">I", announce)
    pending = set(socks)
    deadline = time.monotonic() + 20
    by_fd = {s.fileno(): s for s in socks}
    poller = select.poll()
    for s in socks:
        poller.register(s, select.POLLOUT)
    while pending and time.monotonic() < deadline:
        for fd, _ in poller.poll(1000):
            s = by_fd[fd]
            try:
                s.send(header)
            except OSError:
                pass
            poller.unregister(fd)
            pending.remove(s)
    open_s = time.monotonic() - t_open
    readers = {s.fileno(): (s, Reader(s)) for s in socks}
    codes = {}
    closed = 0
    close_times = []
    rss_peak = rss_kb(node_pid)
    lat = []
    rid = 1000
    t0 = time.monotonic()
    next_trickle = t0
    while time.monotonic() - t0 < hold_s and len(readers) > 0:
        now = time.monotonic()
        if now >= next_trickle:
            for s, _ in list(readers.values()):
                try:
                    s.send(b"\x0a")
                except OSError:
                    pass
            next_trickle = now + trickle_ms / 1000.0
        poller = select.poll()
        for fd in readers:
            poller.register(fd, select.POLLIN)
        for fd, _ in poller.poll(20):
            entry = readers.get(fd)
            if entry is None:
                continue
            rd = entry[1]
            while True:
                f = rd.frame(0)
                if f is None:
                    break
                rid0, body, code, _ = f
                key = "%s_id%d" % (code if code is not None else "body%s" % body, rid0)
                codes[key] = codes.get(key, 0) + 1
            if rd.eof:
                closed += 1
                close_times.append(time.monotonic() - t0)
                del readers[fd]
                entry[0].close()
        rid += 1
        ms, resp = normal_call(rid)
        assert resp is not None and resp[0] == rid and resp[1] == 11, \
            "the normal client got %r" % (resp,)
        lat.append(ms)
        rss_peak = max(rss_peak, rss_kb(node_pid))
    still_open = len(readers)
    for s, _ in readers.values():
        s.close()
    time.sleep(0.5)
    rss_after = rss_kb(node_pid)
    print("sockets=%d open_s=%.2f closed_by_node=%d still_open=%d "
          "close_p50_s=%.2f close_max_s=%.2f codes=%s "
          "rss_before_kb=%d rss_peak_kb=%d rss_after_kb=%d "
          "normal_calls=%d normal_base_p50_ms=%.2f normal_p50_ms=%.2f "
          "normal_p99_ms=%.2f normal_max_ms=%.2f"
          % (n, open_s, closed, still_open, pct(close_times, 50),
             max(close_times) if close_times else -1,
             ",".join("%s:%d" % kv for kv in sorted(codes.items())),
             rss_before, rss_peak, rss_after, len(lat), pct(base, 50),
             pct(lat, 50), pct(lat, 99), max(lat) if lat else -1))


def nonreader(port, token, seconds, node_pid):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    rd = Reader(s)
    s.sendall(auth(1, token))
    ok = rd.frame(5)
    assert ok and ok[1] == 3, "not authenticated: %r" % (ok,)
    rss_before = rss_kb(node_pid)
    s.setblocking(False)
    frame = stats(2)
    batch = frame * 256
    out = b""
    sent_bytes = 0
    rss_max = rss_before
    t0 = time.monotonic()
    blocked_s = 0.0
    while time.monotonic() - t0 < seconds:
        if not out:
            out = batch
        try:
            k = s.send(out)
            out = out[k:]
            sent_bytes += k
        except BlockingIOError:
            time.sleep(0.01)
            blocked_s += 0.01
        rss_max = max(rss_max, rss_kb(node_pid))
    rss_end = rss_kb(node_pid)
    # Finish the frame cut in half, then read every answer.
    s.setblocking(True)
    rest = (len(frame) - sent_bytes % len(frame)) % len(frame)
    sent = (sent_bytes + rest) // len(frame)
    tail = frame[len(frame) - rest:] if rest else b""
    answered = 0
    codes = {}
    s.setblocking(False)
    t1 = time.monotonic()
    while answered < sent and time.monotonic() - t1 < 120:
        if tail:
            try:
                k = s.send(tail)
                tail = tail[k:]
            except BlockingIOError:
                pass
        f = rd.frame(0.05 if tail else 10)
        if f is None:
            if rd.eof or not tail:
                break
            continue
        answered += 1
        key = str(f[2]) if f[2] is not None else "stats"
        codes[key] = codes.get(key, 0) + 1
    drain_s = time.monotonic() - t1
    print("sent=%d answered=%d eof=%d blocked_s=%.1f codes=%s "
          "rss_before_kb=%d rss_max_kb=%d rss_end_kb=%d drain_s=%.1f"
          % (sent, answered, int(rd.eof), blocked_s,
             ",".join("%s:%d" % kv for kv in sorted(codes.items())),
             rss_before, rss_max, rss_end, drain_s))


def rid0(port, token):
    s = connect(port)
    rd = Reader(s)
    s.sendall(auth(1, token))
    ok = rd.frame(5)
    assert ok and ok[1] == 3, "not authenticated: %r" % (ok,)
    s.sendall(stats(0))
    f = rd.frame(5)
    s.sendall(stats(9))
    g = rd.frame(5)
    print("rid0_answer_id=%s rid0_code=%s rid0_text=%r next_id=%s next_body=%s"
          % (f[0] if f else "none", f[2] if f else "none",
             f[3] if f else "", g[0] if g else "none", g[1] if g else "none"))


def main():
    cmd = sys.argv[1]
    a = sys.argv[2:]
    if cmd == "flood":
        flood(int(a[0]), a[1], int(a[2]), int(a[3]), int(a[4]), float(a[5]), a[6])
    elif cmd == "nonreader":
        nonreader(int(a[0]), a[1], float(a[2]), a[3])
    elif cmd == "rid0":
        rid0(int(a[0]), a[1])
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
