#!/usr/bin/env node
// ftp-deploy.js HOST PORT USER PASS LOCALDIR SERVERDIR [clean]
//
// Runs one deployment with @samkirkland/ftp-deploy, the library behind
// the "FTP Deploy" GitHub Action (SamKirkland/FTP-Deploy-Action): it
// syncs LOCALDIR to SERVERDIR over plain FTP, keeping a state file of
// hashes there (.ftp-deploy-sync-state.json) so that a later run uploads
// what changed, removes what went and makes new directories; "clean"
// sets dangerous-clean-slate (the server directory emptied first). It
// prints a JSON report on stdout: {"ok": bool, "error": string}. Read by
// frontends/ftp/ftpdeploy_test.go, which checks the server's tree.
'use strict';

const { deploy } = require('@samkirkland/ftp-deploy');

const [host, port, username, password, localDir, serverDir, clean] = process.argv.slice(2);

(async () => {
  const report = { ok: false, error: '' };
  // The library logs to stdout; the report must be the only thing there.
  const log = console.log;
  console.log = (...a) => process.stderr.write(a.join(' ') + '\n');
  try {
    await deploy({
      server: host,
      port: Number(port),
      username,
      password,
      protocol: 'ftp',
      'local-dir': localDir.endsWith('/') ? localDir : localDir + '/',
      'server-dir': serverDir.endsWith('/') ? serverDir : serverDir + '/',
      'dangerous-clean-slate': clean === 'clean',
      'log-level': 'verbose',
      timeout: 20000,
    });
    report.ok = true;
  } catch (e) {
    report.error = String(e && e.message ? e.message : e);
  }
  console.log = log;
  console.log(JSON.stringify(report));
})();
