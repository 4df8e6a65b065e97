#!/usr/bin/env node
// vscode-ftp.js ADDR USER PASS LOCALDIR
//
// Replays what the VS Code "SFTP" extension (liximomo/vscode-sftp, now
// Natizyskunk/vscode-sftp v1.16.x) sends over plain FTP, with the library
// it is built on (npm "ftp" 0.3.10, node-ftp), and prints a JSON report on
// stdout. Read by frontends/ftp/node_test.go, which checks the effects on
// disk.
//
// What the extension does, from its src/core/remote-client/ftpClient.ts and
// src/core/fs/ftpFileSystem.ts of the node-ftp era, and node-ftp itself:
//   - connect with keepalive 10000: node-ftp sends USER, PASS, FEAT, TYPE I
//     and then a NOOP after every 10 s without a command; with the
//     "passive" option the extension opens one PASV data connection right
//     after login and never uses it;
//   - transfers are PASV only (node-ftp knows no EPSV), one command at a
//     time on the connection;
//   - upload: STOR (with useTempFile to target.new), then
//     "MFMT YYYYMMDDhhmmss path" (setLastMod, sent through client._send),
//     then with useTempFile DELE target (errors ignored) and RNFR/RNTO;
//     permissions go through "SITE CHMOD <octal> path";
//   - lstat is a LIST of the parent directory searched for the name, so
//     LIST must show dotfiles in `ls -l` format;
//   - ensureDir: lstat first; then MKD, where a 550 whose text contains
//     "file exists" counts as success and any other 550 recurses into the
//     parent.
//
// LOCALDIR holds one directory per upload round (see ROUNDS); every file in
// it is uploaded to REMOTE_DIR, and the local mtime is what MFMT sets.
//
// Environment (for tests; the defaults are the extension's):
//   VSCODE_FTP_KEEPALIVE_MS  node-ftp keepalive (default 10000)
//   VSCODE_FTP_IDLE_MS       stay idle this long before the last LIST, so
//                            NOOPs flow (default 0)
//   VSCODE_FTP_PASSIVE       "0" to skip the extension's up-front PASV
'use strict';

const fs = require('fs');
const path = require('path');
const Client = require('ftp');

const REMOTE_DIR = '/vscode/a/b/c';
const ROUNDS = [
  { dir: '1', useTempFile: true, chmod: 0o640 },
  { dir: '2', useTempFile: true, chmod: 0o644 },
  { dir: '3', useTempFile: false, chmod: 0o644 },
];

const report = {
  ok: false,
  transcript: [],
  ensureDir: [],
  ensureDirNew: [],
  mkdirExisting: null,
  uploads: [],
  list: [],
  listAfterIdle: [],
  rename: null,
  delete: null,
  errors: [],
};

const [addr, user, pass, localDir] = process.argv.slice(2);
if (!addr || !user || pass === undefined || !localDir) {
  process.stderr.write('usage: vscode-ftp.js ADDR USER PASS LOCALDIR\n');
  process.exit(2);
}
const colon = addr.lastIndexOf(':');
const host = addr.slice(0, colon).replace(/^\[|\]$/g, '');
const port = parseInt(addr.slice(colon + 1), 10);
const env = process.env;
const keepalive = parseInt(env.VSCODE_FTP_KEEPALIVE_MS || '10000', 10);
const idleMs = parseInt(env.VSCODE_FTP_IDLE_MS || '0', 10);
const passive = env.VSCODE_FTP_PASSIVE !== '0';

function done(code) {
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  process.exit(code);
}

function fail(err) {
  report.errors.push(String((err && err.stack) || err));
  done(1);
}

function errInfo(err) {
  if (!err) return null;
  return { code: err.code === undefined ? null : err.code, message: err.message };
}

const c = new Client();

// Every node-ftp call as a promise, recorded in log.
function call(log, what, fn) {
  return new Promise((resolve, reject) => {
    fn((err, res) => {
      log.push({ op: what, err: errInfo(err) });
      if (err) reject(err);
      else resolve(res);
    });
  });
}

// The extension's setLastMod: MFMT through node-ftp's command queue.
function mfmtTime(date) {
  const p = (n) => String(n).padStart(2, '0');
  return (
    date.getUTCFullYear() +
    p(date.getUTCMonth() + 1) +
    p(date.getUTCDate()) +
    p(date.getUTCHours()) +
    p(date.getUTCMinutes()) +
    p(date.getUTCSeconds())
  );
}
function setLastMod(p, date, cb) {
  c._send('MFMT ' + mfmtTime(date) + ' ' + p, cb);
}

function listEntry(e) {
  return {
    name: e.name,
    type: e.type,
    size: typeof e.size === 'string' ? parseInt(e.size, 10) : e.size,
    date: e.date instanceof Date && !isNaN(e.date) ? e.date.toISOString() : null,
    rights: e.rights,
  };
}

async function list(log, dir) {
  const entries = await call(log, 'LIST ' + dir, (cb) => c.list(dir, cb));
  // item is a string when node-ftp could not parse the line (liximomo#308)
  return entries.filter((e) => e && e.name && e.name !== '.' && e.name !== '..');
}

// ftpFileSystem.lstat: LIST the parent and look for the name.
async function lstat(log, p) {
  const entries = await list(log, path.posix.dirname(p));
  const e = entries.find((x) => x.name === path.posix.basename(p));
  if (!e) throw new Error('file not exist');
  return e;
}

// ftpFileSystem._ensureDir.
async function ensureDir(log, dir, checkExistFirst) {
  if (checkExistFirst) {
    let st;
    try {
      st = await lstat(log, dir);
    } catch (_) {
      // ignore
    }
    if (st) {
      if (st.type !== 'd') throw new Error(dir + ' is not a valid directory path');
      return;
    }
  }
  let err;
  try {
    await call(log, 'MKD ' + dir, (cb) => c.mkdir(dir, cb));
    return;
  } catch (e) {
    err = e;
  }
  if (err.code === 550) {
    if (err.message.toLowerCase().indexOf('file exists') >= 0) return;
    const parent = path.posix.dirname(dir);
    if (parent === dir) throw err;
    await ensureDir(log, parent, false);
    await call(log, 'MKD ' + dir, (cb) => c.mkdir(dir, cb));
    return;
  }
  let st;
  try {
    st = await lstat(log, dir);
  } catch (_) {
    throw err;
  }
  if (st.type !== 'd') throw err;
}

// TransferTask._transferFile over FTP, plus the SITE CHMOD.
async function upload(round, localPath, target) {
  const steps = [];
  const rec = { round: round.dir, target, steps, err: null };
  report.uploads.push(rec);
  const st = fs.statSync(localPath);
  const uploadTarget = target + (round.useTempFile ? '.new' : '');
  try {
    const data = fs.readFileSync(localPath);
    await call(steps, 'STOR ' + uploadTarget, (cb) => c.put(data, uploadTarget, cb));
    await call(steps, 'MFMT ' + uploadTarget, (cb) =>
      setLastMod(uploadTarget, new Date(Math.floor(st.mtimeMs / 1000) * 1000), cb),
    );
    if (round.useTempFile) {
      try {
        await call(steps, 'DELE ' + target, (cb) => c.delete(target, cb));
      } catch (_) {
        // ignored, as the extension does
      }
      await call(steps, 'RNFR/RNTO ' + target, (cb) => c.rename(uploadTarget, target, cb));
    }
    if (round.chmod) {
      const cmd = 'CHMOD ' + round.chmod.toString(8) + ' ' + target;
      await call(steps, 'SITE ' + cmd, (cb) => c.site(cmd, cb));
    }
  } catch (e) {
    rec.err = errInfo(e);
  }
}

async function run() {
  if (passive) {
    // ftpClient.ts: on "ready" with option.passive, client._pasv(resolve).
    await new Promise((resolve) => c._pasv(() => resolve()));
    report.transcript.push('(up-front PASV done)');
  }

  await ensureDir(report.ensureDir, REMOTE_DIR, true);

  for (const round of ROUNDS) {
    const dir = path.join(localDir, round.dir);
    if (!fs.existsSync(dir)) continue;
    for (const name of fs.readdirSync(dir).sort()) {
      await upload(round, path.join(dir, name), path.posix.join(REMOTE_DIR, name));
    }
  }

  // MKD of a directory that exists: the reply must say "file exists".
  try {
    await call([], 'MKD', (cb) => c.mkdir(REMOTE_DIR, cb));
    report.mkdirExisting = { code: null, message: 'MKD succeeded' };
  } catch (e) {
    report.mkdirExisting = errInfo(e);
  }
  // ensureDir of an existing directory: found by LIST of its parent.
  await ensureDir([], REMOTE_DIR, true);
  // ensureDir of a new directory under a missing one: must recurse.
  await ensureDir(report.ensureDirNew, '/vscode/x/y', true);

  report.list = (await list([], REMOTE_DIR)).map(listEntry);

  const renFrom = path.posix.join(REMOTE_DIR, 'old.txt');
  const renTo = path.posix.join(REMOTE_DIR, 'renamed.txt');
  try {
    await call([], 'rename', (cb) => c.rename(renFrom, renTo, cb));
    report.rename = 'ok';
  } catch (e) {
    report.rename = errInfo(e);
  }
  try {
    await call([], 'delete', (cb) => c.delete(path.posix.join(REMOTE_DIR, 'junk.txt'), cb));
    report.delete = 'ok';
  } catch (e) {
    report.delete = errInfo(e);
  }

  if (idleMs > 0) await new Promise((r) => setTimeout(r, idleMs));
  report.listAfterIdle = (await list([], REMOTE_DIR)).map(listEntry);
}

c.on('error', (err) => fail(err));
c.on('ready', () => {
  run().then(
    () => {
      report.ok = true;
      c.once('end', () => done(0));
      c.once('close', () => done(0));
      c.end();
    },
    (err) => fail(err),
  );
});
c.connect({
  host,
  port,
  user,
  password: pass,
  keepalive,
  connTimeout: 10000,
  pasvTimeout: 10000,
  debug: (line) => {
    report.transcript.push(line.replace(/PASS .*?'/, "PASS ****'"));
  },
});
