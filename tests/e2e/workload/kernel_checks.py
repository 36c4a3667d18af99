# Kernel features a container workload uses, each exercised for real inside the guest.
# argv[1] names the check; it prints what it saw and exits 0 only if the feature worked.
import ctypes
import os
import socket
import struct
import sys
import tempfile
import threading

libc = ctypes.CDLL(None, use_errno=True)


def fail(what):
    err = ctypes.get_errno()
    sys.exit(f"{what} failed: {os.strerror(err)} (errno {err})")


def echo_once(family, kind, address):
    """Serves one echo on a socket of (family, kind) at address; returns the reply."""
    server = socket.socket(family, kind)
    server.bind(address)
    if kind == socket.SOCK_STREAM:
        server.listen(1)
    bound = server.getsockname()

    def serve():
        if kind == socket.SOCK_STREAM:
            conn, _ = server.accept()
            conn.sendall(conn.recv(64).upper())
            conn.close()
        else:
            data, peer = server.recvfrom(64)
            server.sendto(data.upper(), peer)

    t = threading.Thread(target=serve)
    t.start()
    client = socket.socket(family, kind)
    if family == socket.AF_UNIX and kind == socket.SOCK_DGRAM:
        client.bind(address + ".client")
    client.settimeout(30)
    client.connect(bound)
    client.send(b"ping over %d/%d" % (family, kind))
    reply = client.recv(64)
    t.join()
    client.close()
    server.close()
    return reply


def sockets():
    tmp = tempfile.mkdtemp()
    cases = [
        ("AF_INET tcp 127.0.0.1", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0)),
        ("AF_INET udp 127.0.0.1", socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0)),
        ("AF_INET6 tcp ::1", socket.AF_INET6, socket.SOCK_STREAM, ("::1", 0)),
        ("AF_INET6 udp ::1", socket.AF_INET6, socket.SOCK_DGRAM, ("::1", 0)),
        ("AF_UNIX stream", socket.AF_UNIX, socket.SOCK_STREAM, tmp + "/stream"),
        ("AF_UNIX dgram", socket.AF_UNIX, socket.SOCK_DGRAM, tmp + "/dgram"),
    ]
    for label, family, kind, address in cases:
        reply = echo_once(family, kind, address)
        expected = (b"ping over %d/%d" % (family, kind)).upper()
        if reply != expected:
            sys.exit(f"{label}: got {reply!r}, expected {expected!r}")
        print(f"{label}: ok")
    a, b = socket.socketpair()
    a.sendall(b"pair")
    if b.recv(4) != b"pair":
        sys.exit("socketpair: data lost")
    print("AF_UNIX socketpair: ok")


def sysv_shm():
    IPC_PRIVATE, IPC_CREAT, IPC_RMID = 0, 0o1000, 0
    libc.shmget.restype = ctypes.c_int
    libc.shmat.restype = ctypes.c_void_p
    libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    libc.shmdt.argtypes = [ctypes.c_void_p]
    libc.shmctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    shmid = libc.shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0o600)
    if shmid < 0:
        fail("shmget")
    pid = os.fork()
    if pid == 0:
        # The child writes through its own attachment; the parent must see it.
        addr = libc.shmat(shmid, None, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            os._exit(1)
        ctypes.memmove(addr, b"written by the child\0", 21)
        libc.shmdt(addr)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        sys.exit(f"the child could not attach the segment (wait status {status})")
    addr = libc.shmat(shmid, None, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        fail("shmat")
    seen = ctypes.string_at(addr)
    libc.shmdt(addr)
    if libc.shmctl(shmid, IPC_RMID, None) != 0:
        fail("shmctl(IPC_RMID)")
    if seen != b"written by the child":
        sys.exit(f"shared memory shows {seen!r}")
    print(f"SysV shm segment {shmid}: the parent read what the child wrote")


def inotify():
    IN_CREATE, IN_CLOEXEC = 0x100, 0o2000000
    fd = libc.inotify_init1(IN_CLOEXEC)
    if fd < 0:
        fail("inotify_init1")
    watched = tempfile.mkdtemp()
    if libc.inotify_add_watch(fd, watched.encode(), IN_CREATE) < 0:
        fail("inotify_add_watch")
    open(os.path.join(watched, "new-file"), "w").close()
    data = os.read(fd, 4096)
    _wd, mask, _cookie, length = struct.unpack_from("iIII", data)
    name = data[16:16 + length].rstrip(b"\0").decode()
    if not (mask & IN_CREATE) or name != "new-file":
        sys.exit(f"inotify event mask {mask:#x} name {name!r}")
    print(f"inotify: IN_CREATE for {name}")


{"sockets": sockets, "sysv_shm": sysv_shm, "inotify": inotify}[sys.argv[1]]()
