"""A TLS client and server on 127.0.0.1 that use TCP Fast Open (RFC 7413), for test_tcp_fast_open.

    python3 tfo_pair.py PORT DIR   (DIR holds cert.pem and key.pem)

The server's listening socket has TCP_FASTOPEN; the client sends its ClientHello with
sendto(MSG_FASTOPEN) twice: the first SYN asks for a cookie (the data then follows the
handshake), the second carries the cookie and the ClientHello on the SYN. Each side then
exchanges ping/pong. Needs net.ipv4.tcp_fastopen=3 in the network namespace it runs in.
"""

import socket
import ssl
import sys
import threading
from pathlib import Path

MSG_FASTOPEN = 0x20000000
port = int(sys.argv[1])
d = Path(sys.argv[2])
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)
srv.bind(("127.0.0.1", port))
srv.listen(8)
sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
sctx.load_cert_chain(d / "cert.pem", d / "key.pem")


def serve():
    for _ in range(2):
        c, _a = srv.accept()
        try:
            with sctx.wrap_socket(c, server_side=True) as t:
                t.recv(100)
                t.sendall(b"pong\n")
        except Exception as e:
            print("server", e)


th = threading.Thread(target=serve)
th.start()
cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
cctx.check_hostname = False
cctx.verify_mode = ssl.CERT_NONE
for _i in range(2):  # first gets the cookie, second sends data on the SYN
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = cctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.sendto(hello, MSG_FASTOPEN, ("127.0.0.1", port))
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            o = out.read()
            if o:
                s.sendall(o)
            data = s.recv(65536)
            if not data:
                break
            inc.write(data)
    o = out.read()
    if o:
        s.sendall(o)
    obj.write(b"ping\n")
    s.sendall(out.read())
    while True:
        try:
            print("client got", obj.read(100))
            break
        except ssl.SSLWantReadError:
            inc.write(s.recv(65536))
    s.close()
th.join()
