#!/usr/bin/env python3
"""A one-record DNS responder for the pod-network tests: answers every A
query with 10.1.2.3 and appends each client's source address to a log file,
so a test can see UDP cross petrel's NAT both ways."""
import socket
import struct
import sys

addr, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, 53))
while True:
    data, peer = s.recvfrom(512)
    with open(log, "a") as f:
        f.write(f"{peer[0]}\n")
    if len(data) < 12:
        continue
    qid = data[:2]
    end = 12
    while end < len(data) and data[end] != 0:
        end += data[end] + 1
    question = data[12:end + 5]
    qtype = struct.unpack("!H", data[end + 1:end + 3])[0] if end + 3 <= len(data) else 1
    answers = 1 if qtype == 1 else 0
    header = qid + struct.pack("!HHHHH", 0x8180, 1, answers, 0, 0)
    answer = b""
    if answers:
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([10, 1, 2, 3])
    s.sendto(header + question + answer, peer)
