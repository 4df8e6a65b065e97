#!/usr/bin/env node
// vscode-sftp.js ADDR USER PASS LOCALDIR
//
// Replays what the VS Code "SFTP" extension (liximomo/vscode-sftp, now
// Natizyskunk/vscode-sftp v1.16.x) sends over SFTP, with the same library it
// uses (ssh2 1.x), and prints a JSON report on stdout. Read by
// frontends/sftp/node_test.go, which checks the effects on disk.
//
// What the extension does, from its src/core/remote-client/sshClient.ts,
// src/core/fs/sftpFileSystem.ts and src/core/transferTask.ts:
//   - connect with keepaliveInterval 30000 / keepaliveCountMax 2, and the
//     transport algorithms its README documents as the default (no
//     curve25519 key exchange);
//   - ensureDir: MKDIR, and on NO_SUCH_FILE (2) recurse into the parent
//     and try again; any other error is fine if an LSTAT says "directory";
//   - upload (TransferTask._transferFile): OPEN target(.new) for "w"; when
//     no filePerm is configured and perserveTargetMode is on, also OPEN the
//     target for "r" and FSTAT it for its mode; then FCHMOD the mode
//     (falling back to SETSTAT), the write stream on the handle, FSETSTAT
//     atime/mtime (futimes); with useTempFile either posix-rename@openssh.com
//     (openSsh) or REMOVE target + RENAME; the upload handle is CLOSEd last,
//     in a finally, that is after the rename;
//   - listings are READDIR; up to 4 transfers run at once (concurrency 4).
//
// LOCALDIR holds one directory per upload round; every file in a round is
// uploaded to REMOTE_DIR with that round's options (see ROUNDS). The local
// files' mtimes are what gets set remotely, as the extension does.
//
// Environment (for tests; the defaults are the extension's):
//   VSCODE_SFTP_KEX           comma list of key exchanges to offer
//   VSCODE_SFTP_KEEPALIVE_MS  keepaliveInterval (default 30000)
//   VSCODE_SFTP_IDLE_MS       stay idle this long before the last steps, so
//                             keepalives flow (default 0)
//   VSCODE_SFTP_MODE          "handshake": connect, open SFTP, REALPATH, quit;
//                             "symlink": then SYMLINK /link -> target.txt and
//                             READLINK it (ssh2's symlink, as the extension's
//                             upload of a local link calls it)
//   VSCODE_SFTP_NODELAY       "1": TCP_NODELAY on the socket. The extension
//                             does not set it, and ssh2's JavaScript ciphers
//                             (its native binding is not built with
//                             --ignore-scripts) write one packet in several
//                             socket writes, so with Nagle every request
//                             waits for the server's delayed ACK (~40 ms on
//                             Linux, against OpenSSH's sshd as well).
'use strict';

const fs = require('fs');
const path = require('path');
const { Client } = require('ssh2');

const REMOTE_DIR = '/vscode/a/b/c';
const CONCURRENCY = 4;
const t0 = Date.now();

// Upload rounds: LOCALDIR/<dir>/* with the extension's options.
const ROUNDS = [
  // First upload: targets don't exist, the REMOVE fails and is ignored.
  { dir: '1', useTempFile: true, openSsh: false, filePerm: 0o640 },
  // Save again: REMOVE the target, then RENAME target.new onto its name.
  { dir: '2', useTempFile: true, openSsh: false, filePerm: 0o640 },
  // openSsh: posix-rename@openssh.com onto the existing target; no
  // filePerm, so the mode is read from the target (OPEN "r" + FSTAT).
  { dir: '3', useTempFile: true, openSsh: true, perserveTargetMode: true },
  // Without useTempFile: straight into the target.
  { dir: '4', useTempFile: false, openSsh: false, filePerm: 0o640 },
];

// The extension's documented default "algorithms" (README, "algorithms").
const ALGORITHMS = {
  kex: [
    'ecdh-sha2-nistp256',
    'ecdh-sha2-nistp384',
    'ecdh-sha2-nistp521',
    'diffie-hellman-group-exchange-sha256',
  ],
  cipher: [
    'aes128-gcm',
    'aes128-gcm@openssh.com',
    'aes256-gcm',
    'aes256-gcm@openssh.com',
    'aes128-cbc',
    'aes192-cbc',
    'aes256-cbc',
    'aes128-ctr',
    'aes192-ctr',
    'aes256-ctr',
  ],
  serverHostKey: [
    'ssh-rsa',
    'ssh-dss',
    'ssh-ed25519',
    'ecdsa-sha2-nistp256',
    'ecdsa-sha2-nistp384',
    'ecdsa-sha2-nistp521',
    'rsa-sha2-512',
    'rsa-sha2-256',
  ],
  hmac: ['hmac-sha2-256', 'hmac-sha2-512'],
};

const report = {
  ok: false,
  algorithms: ALGORITHMS,
  negotiated: null,
  extensions: null,
  realpath: null,
  ensureDir: [],
  ensureDirExisting: [],
  uploads: [],
  readdir: [],
  stat: {},
  keepalive: { interval: 0, pings: 0, replies: 0 },
  afterIdle: null,
  errors: [],
};

function fail(err) {
  report.errors.push(String((err && err.stack) || err));
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  process.exit(1);
}

function errInfo(err) {
  if (!err) return null;
  return { code: err.code === undefined ? null : err.code, message: err.message };
}

const [addr, user, pass, localDir] = process.argv.slice(2);
if (!addr || !user || pass === undefined || !localDir) {
  process.stderr.write('usage: vscode-sftp.js ADDR USER PASS LOCALDIR\n');
  process.exit(2);
}
const colon = addr.lastIndexOf(':');
const host = addr.slice(0, colon).replace(/^\[|\]$/g, '');
const port = parseInt(addr.slice(colon + 1), 10);

const env = process.env;
if (env.VSCODE_SFTP_KEX) ALGORITHMS.kex = env.VSCODE_SFTP_KEX.split(',');
const keepaliveInterval = parseInt(env.VSCODE_SFTP_KEEPALIVE_MS || '30000', 10);
const idleMs = parseInt(env.VSCODE_SFTP_IDLE_MS || '0', 10);
report.keepalive.interval = keepaliveInterval;

// Promisified SFTP calls, each one recorded in the step log it is given.
function call(log, sftp, op, args) {
  return new Promise((resolve, reject) => {
    sftp[op](...args, (err, ...res) => {
      const shown = args.map((a) => (Buffer.isBuffer(a) ? '<handle>' : a));
      log.push({ op, args: shown, err: errInfo(err), ms: Date.now() - t0 });
      if (err) reject(err);
      else resolve(res[0]);
    });
  });
}

// sftpFileSystem.ensureDir.
async function ensureDir(log, sftp, dir) {
  if (dir === '/') return;
  let err;
  try {
    await call(log, sftp, 'mkdir', [dir]);
    return;
  } catch (e) {
    err = e;
  }
  if (err.code === 2) {
    const parent = path.posix.dirname(dir);
    if (parent === dir) throw err;
    await ensureDir(log, sftp, parent);
    await call(log, sftp, 'mkdir', [dir]);
    return;
  }
  let st;
  try {
    st = await call(log, sftp, 'lstat', [dir]);
  } catch (_) {
    throw err;
  }
  if (!st.isDirectory()) throw err;
}

// TransferTask._transferFile for one local file.
async function upload(sftp, round, localPath, target) {
  const steps = [];
  const rec = { round: round.dir, local: localPath, target, steps, err: null };
  report.uploads.push(rec);
  const lst = fs.statSync(localPath);
  const atime = lst.atimeMs;
  const mtime = lst.mtimeMs;
  let mode = round.filePerm;
  const uploadTarget = target + (round.useTempFile ? '.new' : '');
  let uploadFd;
  let input;
  try {
    if (mode === undefined && round.perserveTargetMode) {
      let targetFd;
      if (round.useTempFile) {
        [targetFd, uploadFd] = await Promise.all([
          call(steps, sftp, 'open', [target, 'r']).catch(() => null),
          call(steps, sftp, 'open', [uploadTarget, 'w']),
        ]);
      } else {
        targetFd = uploadFd = await call(steps, sftp, 'open', [uploadTarget, 'w']);
      }
      if (targetFd) {
        input = fs.createReadStream(localPath);
        mode = await call(steps, sftp, 'fstat', [targetFd])
          .then((st) => st.mode & 0o777)
          .catch(() => undefined);
        if (round.useTempFile) call(steps, sftp, 'close', [targetFd]).catch(() => {});
      } else {
        input = fs.createReadStream(localPath);
      }
      rec.modeFromTarget = mode === undefined ? null : mode;
    } else {
      input = fs.createReadStream(localPath);
      uploadFd = await call(steps, sftp, 'open', [uploadTarget, 'w']);
    }

    try {
      // sftpFileSystem.put with an fd: fchmod (falling back to chmod) first,
      // errors ignored, then a write stream on the handle.
      if (mode) {
        try {
          await call(steps, sftp, 'fchmod', [uploadFd, mode]);
        } catch (_) {
          await call(steps, sftp, 'chmod', [uploadTarget, mode]).catch(() => {});
        }
      }
      await new Promise((resolve, reject) => {
        const w = sftp.createWriteStream(uploadTarget, { handle: uploadFd, autoClose: false, mode });
        w.once('error', reject).once('finish', resolve);
        input.once('error', (e) => {
          reject(e);
          w.end();
        });
        input.pipe(w);
      });
      steps.push({ op: 'write', args: [uploadTarget, lst.size], err: null, ms: Date.now() - t0 });
      if (atime && mtime) {
        try {
          await call(steps, sftp, 'futimes', [uploadFd, Math.floor(atime / 1000), Math.floor(mtime / 1000)]);
        } catch (_) {
          // the extension warns once and goes on
        }
      }
      if (round.useTempFile) {
        if (round.openSsh) {
          await call(steps, sftp, 'ext_openssh_rename', [uploadTarget, target]);
        } else {
          try {
            await call(steps, sftp, 'unlink', [target]);
          } catch (_) {
            // "Just ignore"
          }
          await call(steps, sftp, 'rename', [uploadTarget, target]);
        }
      }
    } finally {
      if (uploadFd) await call(steps, sftp, 'close', [uploadFd]);
    }
  } catch (e) {
    rec.err = errInfo(e);
  }
}

// Runs fn over items, at most n at a time.
async function pool(items, n, fn) {
  const queue = items.slice();
  const workers = [];
  for (let i = 0; i < Math.min(n, queue.length); i++) {
    workers.push(
      (async () => {
        while (queue.length) await fn(queue.shift());
      })(),
    );
  }
  await Promise.all(workers);
}

function attrs(st) {
  return { size: st.size, mode: st.mode, mtime: st.mtime, atime: st.atime };
}

async function run(conn) {
  const sftp = await new Promise((resolve, reject) => conn.sftp((err, s) => (err ? reject(err) : resolve(s))));
  report.extensions = sftp._extensions || {};
  report.realpath = await call([], sftp, 'realpath', ['.']);
  if (env.VSCODE_SFTP_MODE === 'handshake') return;
  if (env.VSCODE_SFTP_MODE === 'symlink') {
    // ssh2's sftp.symlink(target, link): which of the two goes first on
    // the wire depends on whether the server is named OpenSSH.
    report.isOpenSSH = !!sftp._isOpenSSH;
    await call(report.ensureDir, sftp, 'symlink', ['target.txt', '/link']);
    report.readlink = await call(report.ensureDir, sftp, 'readlink', ['/link']);
    return;
  }

  await ensureDir(report.ensureDir, sftp, REMOTE_DIR);

  for (const round of ROUNDS) {
    const dir = path.join(localDir, round.dir);
    if (!fs.existsSync(dir)) continue;
    const names = fs.readdirSync(dir).sort();
    await pool(names, CONCURRENCY, (name) =>
      upload(sftp, round, path.join(dir, name), path.posix.join(REMOTE_DIR, name)),
    );
  }

  if (idleMs > 0) await new Promise((r) => setTimeout(r, idleMs));

  // After the idle period the session must still work.
  const list = await call([], sftp, 'readdir', [REMOTE_DIR]);
  report.afterIdle = 'readdir ok';
  report.readdir = list
    .map((e) => ({ filename: e.filename, longname: e.longname, ...attrs(e.attrs) }))
    .sort((a, b) => (a.filename < b.filename ? -1 : 1));
  for (const e of report.readdir) {
    const p = path.posix.join(REMOTE_DIR, e.filename);
    report.stat[p] = attrs(await call([], sftp, 'stat', [p]));
  }
  // ensureDir of a directory that exists: MKDIR fails, LSTAT says directory.
  await ensureDir(report.ensureDirExisting, sftp, REMOTE_DIR);
}

const conn = new Client();
let pings = 0;
let replies = 0;
// ssh2 (and so the extension) leaves Nagle on; see VSCODE_SFTP_NODELAY.
if (env.VSCODE_SFTP_NODELAY === '1') conn.on('connect', () => conn.setNoDelay(true));
conn.on('handshake', (negotiated) => {
  report.negotiated = negotiated;
});
conn.on('error', (err) => fail(err));
conn.on('ready', () => {
  run(conn).then(
    () => {
      report.keepalive.pings = pings;
      report.keepalive.replies = replies;
      report.ok = true;
      conn.end();
      process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    },
    (err) => fail(err),
  );
});
conn.connect({
  host,
  port,
  username: user,
  password: pass,
  readyTimeout: 20000,
  keepaliveInterval,
  keepaliveCountMax: 2,
  algorithms: ALGORITHMS,
  hostVerifier: () => true,
  tryKeyboard: false,
  debug: (msg) => {
    if (msg.includes('Sending ping')) pings++;
    else if (msg.includes('REQUEST_SUCCESS') || msg.includes('REQUEST_FAILURE')) replies++;
  },
});
