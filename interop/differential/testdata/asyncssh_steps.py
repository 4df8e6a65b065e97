"""asyncssh_steps.py PORT USER PASSWORD BASE LOCAL

Replays what Python code does over SFTP and SCP with asyncssh (Debian's
python3-asyncssh), whose SFTP client uses the OpenSSH extensions where the
server offers them (posix-rename, hardlink, statvfs, fsync, lsetstat,
limits): one JSON line per step on stdout, {"step": NAME,
"result": WHAT IT RETURNED OR RAISED}. BASE is the server path of the
steps' "/" ("" on upgate, the home directory on OpenSSH), left out of
every answer; LOCAL is a scratch directory of the client's. An SFTP error
is its code only: the message is the server's own. Read by
libraries_test.go.
"""
import asyncio
import json
import os
import sys
import warnings

warnings.simplefilter("ignore")
import asyncssh  # noqa: E402

port, user, password, base, local = sys.argv[1:]


def tree(d):
    out = []
    for root, dirs, files in os.walk(d):
        dirs.sort()
        for n in sorted(dirs + files):
            p = os.path.join(root, n)
            st = os.lstat(p)
            kind = "dir" if os.path.isdir(p) else str(st.st_size)
            mt = int(st.st_mtime) if st.st_mtime < 1500000000 else "now"
            out.append("%s %o %s %s" % (os.path.relpath(p, d), st.st_mode & 0o7777, kind, mt))
    return sorted(out)


async def main():
    src = os.path.join(local, "src")
    os.makedirs(os.path.join(src, "sub"))
    with open(os.path.join(src, "a.txt"), "w") as f:
        f.write("hello\n")
    with open(os.path.join(src, "sub", "b.bin"), "wb") as f:
        f.write(b"b" * 300017)
    os.chmod(os.path.join(src, "a.txt"), 0o604)
    os.chmod(os.path.join(src, "sub"), 0o750)
    os.utime(os.path.join(src, "a.txt"), (1000000000, 1000000001))
    os.utime(os.path.join(src, "sub", "b.bin"), (1000000000, 1000000002))
    os.utime(os.path.join(src, "sub"), (1000000000, 1000000003))
    b = base

    async with asyncssh.connect("127.0.0.1", port=int(port), username=user, password=password,
                                known_hosts=None, client_keys=None, agent_path=None) as conn:
        async def step(name, coro):
            try:
                result = await coro
            except asyncssh.SFTPError as e:
                result = "SFTP error %d" % e.code
            except Exception as e:  # noqa: BLE001
                result = "%s: %s" % (type(e).__name__, e)
            if isinstance(result, bytes):
                result = result.decode("utf-8", "replace")
            if isinstance(result, str) and b:
                result = result.replace(b, "")
            if isinstance(result, list):
                result = [r.replace(b, "") if isinstance(r, str) and b else r for r in result]
            print(json.dumps({"step": name, "result": result}), flush=True)

        async with conn.start_sftp_client() as sftp:
            async def put_tree():
                await sftp.put(src, b + "/tree", recurse=True, preserve=True)
                return "ok"

            async def append():
                async with sftp.open(b + "/a.txt", "a") as f:
                    await f.write("more\n")
                async with sftp.open(b + "/a.txt", "r") as f:
                    return await f.read()

            async def write_at():
                async with sftp.open(b + "/a.txt", "r+") as f:
                    await f.write("HE", 0)
                    await f.fsync()
                async with sftp.open(b + "/a.txt", "rb") as f:
                    return await f.read()

            async def exclusive():
                async with sftp.open(b + "/a.txt", "x") as f:
                    await f.write("x")
                return "ok"

            async def stat(p):
                st = await sftp.stat(b + p)
                return [oct(st.permissions), st.size, st.mtime if st.mtime < 1500000000 else "now"]

            async def lstat(p):
                st = await sftp.lstat(b + p)
                return [oct(st.permissions), st.size if not (st.permissions & 0o170000) == 0o120000 else "link"]

            async def call(f, *a, **kw):
                r = await f(*a, **kw)
                return "ok" if r is None else r

            async def listdir(p):
                return sorted(n for n in await sftp.listdir(b + p) if n not in (".", ".."))

            async def glob(p):
                return sorted(await sftp.glob(b + p))

            async def get_tree():
                await sftp.get(b + "/tree", os.path.join(local, "dl1"), recurse=True, preserve=True)
                return tree(os.path.join(local, "dl1"))

            async def read(p):
                async with sftp.open(b + p, "rb") as f:
                    return await f.read()

            async def statvfs():
                v = await sftp.statvfs(b + "/")
                return v.namemax

            await step("makedirs", call(sftp.makedirs, b + "/m/a/b"))
            await step("makedirs again, exist_ok", call(sftp.makedirs, b + "/m/a/b", exist_ok=True))
            await step("makedirs again", call(sftp.makedirs, b + "/m/a/b"))
            await step("mkdir with a mode", call(sftp.mkdir, b + "/m/mode", asyncssh.SFTPAttrs(permissions=0o750)))
            await step("its mode", stat("/m/mode"))
            await step("put a tree, recurse and preserve", put_tree())
            await step("put a file", call(sftp.put, os.path.join(src, "a.txt"), b + "/a.txt"))
            await step("its stat", stat("/a.txt"))
            await step("append", append())
            await step("write at 0 and fsync", write_at())
            await step("open exclusive an existing file", exclusive())
            await step("symlink", call(sftp.symlink, "a.txt", b + "/ln"))
            await step("readlink", call(sftp.readlink, b + "/ln"))
            await step("lstat of the link", lstat("/ln"))
            await step("stat through the link", stat("/ln"))
            await step("islink, isfile, isdir, exists", asyncio.gather(sftp.islink(b + "/ln"), sftp.isfile(b + "/ln"),
                                                                       sftp.isdir(b + "/m"), sftp.exists(b + "/nosuch")))
            await step("rename", call(sftp.rename, b + "/a.txt", b + "/b.txt"))
            await step("posix_rename over a file", call(sftp.posix_rename, b + "/b.txt", b + "/tree/a.txt"))
            await step("read after it", read("/tree/a.txt"))
            await step("link (hardlink)", call(sftp.link, b + "/tree/a.txt", b + "/hard.txt"))
            await step("link onto an existing name", call(sftp.link, b + "/tree/a.txt", b + "/hard.txt"))
            await step("chmod", call(sftp.chmod, b + "/hard.txt", 0o600))
            await step("utime", call(sftp.utime, b + "/hard.txt", (1000000000, 1000000004)))
            await step("stat after chmod and utime", stat("/hard.txt"))
            await step("statvfs namemax", statvfs())
            await step("realpath with ..", call(sftp.realpath, b + "/tree/../m"))
            await step("glob", glob("/tree/*"))
            await step("glob recursive", glob("/tree/**/*"))
            await step("copy", call(sftp.copy, b + "/tree/sub/b.bin", b + "/copy.bin"))
            await step("its size", stat("/copy.bin"))
            await step("truncate", call(sftp.truncate, b + "/copy.bin", 10))
            await step("get a tree, preserve", get_tree())
            await step("listdir", listdir("/"))
            await step("listdir of a file", listdir("/hard.txt"))
            await step("remove a missing file", call(sftp.remove, b + "/nosuch"))
            await step("rmdir a non-empty directory", call(sftp.rmdir, b + "/m"))
            await step("rmtree", call(sftp.rmtree, b + "/m"))
            await step("listdir after", listdir("/"))
            await step("chdir, then a relative put", sftp.chdir(b + "/tree"))
            await step("getcwd", call(sftp.getcwd))
            await step("relative put", call(sftp.put, os.path.join(src, "a.txt"), "rel.txt"))
            await step("relative stat", sftp.getsize("rel.txt"))

        async def scp_tree():
            await asyncssh.scp(src, (conn, b + "/scptree"), recurse=True, preserve=True)
            return "ok"

        async def scp_get_tree():
            await asyncssh.scp((conn, b + "/scptree"), os.path.join(local, "dl2"), recurse=True, preserve=True)
            return tree(os.path.join(local, "dl2"))

        await step("scp: a file, preserve", call(asyncssh.scp, os.path.join(src, "a.txt"), (conn, b + "/scp.txt"), preserve=True))
        await step("scp: a tree, recurse and preserve", scp_tree())
        await step("scp: get a tree", scp_get_tree())
        await step("scp: into a missing directory", call(asyncssh.scp, os.path.join(src, "a.txt"), (conn, b + "/nodir/x")))
        await step("scp: a missing file", call(asyncssh.scp, (conn, b + "/nosuch"), os.path.join(local, "x")))


asyncio.run(main())
