<?php
// phpseclib.php PORT USER PASSWORD BASE
//
// Replays what PHP code does over SFTP with phpseclib 3 (Debian's
// php-phpseclib3), the library under Flysystem's SFTP adapter and most PHP
// deployment scripts: one JSON line per step on stdout, {"step": NAME,
// "result": WHAT IT RETURNED, "status": THE LAST SFTP STATUS NAME}. BASE is
// the server path of the steps' "/" ("" on upgate, the home directory on
// OpenSSH), left out of every answer. Read by libraries_test.go.
require '/usr/share/php/phpseclib3/autoload.php';

use phpseclib3\Net\SFTP;

[, $port, $user, $password, $base] = $argv;
$sftp = new SFTP('127.0.0.1', (int)$port, 20);
if (!$sftp->login($user, $password)) {
    fwrite(STDERR, "login failed\n");
    exit(1);
}

function step(string $name, callable $f): void
{
    global $sftp, $base;
    $before = count($sftp->getSFTPErrors());
    $result = $f($sftp, $base);
    $errors = $sftp->getSFTPErrors();
    $status = '';
    if (count($errors) > $before) {
        // The status name only: the message after it is the server's own.
        $status = explode(':', end($errors), 2)[0];
    }
    if (is_string($result) && $base !== '') {
        $result = str_replace($base, '', $result);
    }
    echo json_encode(['step' => $name, 'result' => $result, 'status' => $status], JSON_UNESCAPED_SLASHES), "\n";
}

function sorted($list)
{
    if (is_array($list)) {
        sort($list);
    }
    return $list;
}

step('pwd', fn($s, $b) => $s->pwd() === ($b === '' ? '/' : $b) ? 'home' : $s->pwd());
step('mkdir ps', fn($s, $b) => $s->mkdir("$b/ps"));
step('mkdir ps again', fn($s, $b) => $s->mkdir("$b/ps"));
step('mkdir -p ps/a/b/c', fn($s, $b) => $s->mkdir("$b/ps/a/b/c", -1, true));
step('mkdir -p, mode 0750', fn($s, $b) => $s->mkdir("$b/ps/m/n", 0750, true));
step('mode of ps/m/n', fn($s, $b) => decoct($s->stat("$b/ps/m/n")['mode'] & 07777));
step('put a string', fn($s, $b) => $s->put("$b/ps/a.txt", "hello\n"));
step('put, RESUME (append)', fn($s, $b) => $s->put("$b/ps/a.txt", "world\n", SFTP::SOURCE_STRING | SFTP::RESUME));
step('get', fn($s, $b) => $s->get("$b/ps/a.txt"));
step('put at offset 0, no truncation', fn($s, $b) => $s->put("$b/ps/a.txt", "HE", SFTP::SOURCE_STRING, 0));
step('put at offset 2', fn($s, $b) => $s->put("$b/ps/a.txt", "LL", SFTP::SOURCE_STRING, 2));
step('get after the offsets', fn($s, $b) => $s->get("$b/ps/a.txt"));
step('put 1 MiB', fn($s, $b) => $s->put("$b/ps/big.bin", str_repeat("0123456789abcdef", 65536)));
step('filesize', fn($s, $b) => $s->filesize("$b/ps/big.bin"));
step('get 5 bytes at 1048560', fn($s, $b) => $s->get("$b/ps/big.bin", false, 1048560, 5));
step('get past the end', fn($s, $b) => $s->get("$b/ps/big.bin", false, 2000000, 5));
step('put a local file', function ($s, $b) {
    $tmp = tempnam(sys_get_temp_dir(), 'ps');
    file_put_contents($tmp, "from a local file\n");
    $r = $s->put("$b/ps/local.txt", $tmp, SFTP::SOURCE_LOCAL_FILE);
    unlink($tmp);
    return $r;
});
step('put from a stream', function ($s, $b) {
    $fp = fopen('php://memory', 'r+');
    fwrite($fp, str_repeat("stream\n", 10000));
    rewind($fp);
    return $s->put("$b/ps/stream.txt", $fp);
});
step('size of the stream', fn($s, $b) => $s->filesize("$b/ps/stream.txt"));
step('chmod 0600', fn($s, $b) => $s->chmod(0600, "$b/ps/a.txt"));
step('mode after chmod', fn($s, $b) => decoct($s->stat("$b/ps/a.txt")['mode'] & 07777));
step('chmod a missing file', fn($s, $b) => $s->chmod(0600, "$b/ps/nosuch"));
step('chmod recursive', fn($s, $b) => $s->chmod(0750, "$b/ps/a", true));
step('mode below after chmod recursive', fn($s, $b) => decoct($s->stat("$b/ps/a/b/c")['mode'] & 07777));
step('touch with times', fn($s, $b) => $s->touch("$b/ps/a.txt", 1000000000, 1000000001));
step('filemtime, fileatime', fn($s, $b) => [$s->filemtime("$b/ps/a.txt"), $s->fileatime("$b/ps/a.txt")]);
step('touch a new file', fn($s, $b) => $s->touch("$b/ps/new.txt"));
step('file_exists, is_file, is_dir', fn($s, $b) => [$s->file_exists("$b/ps/new.txt"), $s->is_file("$b/ps/new.txt"), $s->is_dir("$b/ps/new.txt")]);
step('filesize of the new file', fn($s, $b) => $s->filesize("$b/ps/new.txt"));
step('is_readable, is_writable', fn($s, $b) => [$s->is_readable("$b/ps/a.txt"), $s->is_writable("$b/ps/a.txt")]);
step('filetype of a directory', fn($s, $b) => $s->filetype("$b/ps/a"));
step('rename', fn($s, $b) => $s->rename("$b/ps/a.txt", "$b/ps/b.txt"));
step('rename a missing file', fn($s, $b) => $s->rename("$b/ps/nosuch", "$b/ps/x"));
step('rename onto a directory', fn($s, $b) => $s->rename("$b/ps/b.txt", "$b/ps/a"));
step('symlink', fn($s, $b) => $s->symlink('b.txt', "$b/ps/ln"));
step('readlink, is_link, is_file through it', fn($s, $b) => [$s->readlink("$b/ps/ln"), $s->is_link("$b/ps/ln"), $s->is_file("$b/ps/ln")]);
step('get through the link', fn($s, $b) => $s->get("$b/ps/ln"));
step('symlink onto an existing name', fn($s, $b) => $s->symlink('b.txt', "$b/ps/new.txt"));
step('symlink into a directory', fn($s, $b) => $s->symlink('../../b.txt', "$b/ps/a/b/up"));
step('readlink of that one', fn($s, $b) => $s->readlink("$b/ps/a/b/up"));
step('nlist', fn($s, $b) => sorted($s->nlist("$b/ps")));
step('nlist recursive', fn($s, $b) => sorted($s->nlist("$b/ps", true)));
step('rawlist: names, types, sizes', function ($s, $b) {
    $out = [];
    foreach ($s->rawlist("$b/ps") as $name => $a) {
        if ($name === '.' || $name === '..') {
            continue;
        }
        $out[$name] = [$a['type'], $a['type'] == NET_SFTP_TYPE_DIRECTORY ? 'dir' : $a['size']];
    }
    ksort($out);
    return $out;
});
step('nlist of a file', fn($s, $b) => $s->nlist("$b/ps/b.txt"));
step('nlist of a missing directory', fn($s, $b) => $s->nlist("$b/ps/nosuch"));
step('truncate', fn($s, $b) => $s->truncate("$b/ps/big.bin", 10));
step('filesize after truncate', fn($s, $b) => $s->filesize("$b/ps/big.bin"));
step('get after truncate', fn($s, $b) => $s->get("$b/ps/big.bin"));
step('delete a directory, not recursive', fn($s, $b) => $s->delete("$b/ps/m", false));
step('rmdir a non-empty directory', fn($s, $b) => $s->rmdir("$b/ps/m"));
step('delete a directory, recursive', fn($s, $b) => $s->delete("$b/ps/m", true));
step('delete the link', fn($s, $b) => $s->delete("$b/ps/ln"));
step('delete a missing file', fn($s, $b) => $s->delete("$b/ps/nosuch"));
step('chdir', fn($s, $b) => $s->chdir("$b/ps"));
step('pwd after chdir', fn($s, $b) => $s->pwd());
step('put a relative name', fn($s, $b) => $s->put('rel.txt', 'rel'));
step('get a relative name', fn($s, $b) => $s->get('rel.txt'));
step('chdir to a missing directory', fn($s, $b) => $s->chdir('nosuch'));
step('chdir to a file', fn($s, $b) => $s->chdir('rel.txt'));
step('chdir ..', fn($s, $b) => $s->chdir('..'));
step('get a missing file', fn($s, $b) => $s->get("$b/ps/nosuch"));
step('a name with a space and accents', fn($s, $b) => $s->put("$b/ps/é à.txt", "accents\n"));
step('its listing', fn($s, $b) => in_array('é à.txt', $s->nlist("$b/ps"), true));
step('a 0444 file, then put onto it', function ($s, $b) {
    $s->put("$b/ps/ro.txt", "ro\n");
    $s->chmod(0444, "$b/ps/ro.txt");
    return $s->put("$b/ps/ro.txt", "rw\n");
});
step('a 0555 directory, then mkdir and put in it', function ($s, $b) {
    $s->mkdir("$b/ps/closed");
    $s->chmod(0555, "$b/ps/closed");
    return [$s->mkdir("$b/ps/closed/sub"), $s->put("$b/ps/closed/f", "f")];
});
step('open it again', fn($s, $b) => $s->chmod(0755, "$b/ps/closed"));
