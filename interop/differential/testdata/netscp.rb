# netscp.rb PORT USER PASSWORD BASE LOCAL
#
# Replays what Ruby deployment code (Capistrano's upload! and download!)
# does with net-scp and net-sftp (Debian's ruby-net-scp, ruby-net-sftp):
# one JSON line per step on stdout, {"step": NAME, "result": WHAT IT
# RETURNED OR RAISED}. BASE is the server path of the steps' "/" ("" on
# upgate, the home directory on OpenSSH), left out of every answer; LOCAL
# is a scratch directory of the client's. An SFTP error is its status code
# only: the message is the server's own. Read by libraries_test.go.
require 'json'
require 'stringio'
require 'fileutils'
require 'net/ssh'
require 'net/scp'
require 'net/sftp'

port, user, password, base, local = ARGV

def tree(dir)
  Dir.glob('**/*', base: dir).sort.map do |p|
    st = File.lstat(File.join(dir, p))
    kind = st.directory? ? 'dir' : st.size.to_s
    format('%s %o %s %s', p, st.mode & 07777, kind, st.mtime.to_i < 1_500_000_000 ? st.mtime.to_i : 'now')
  end
end

FileUtils.mkdir_p(File.join(local, 'src/sub'))
File.write(File.join(local, 'src/a.txt'), "hello\n")
File.write(File.join(local, 'src/sub/b.bin'), 'b' * 100_003)
File.chmod(0o604, File.join(local, 'src/a.txt'))
File.chmod(0o750, File.join(local, 'src/sub'))
File.utime(Time.at(1_000_000_000), Time.at(1_000_000_001), File.join(local, 'src/a.txt'))
File.utime(Time.at(1_000_000_000), Time.at(1_000_000_002), File.join(local, 'src/sub/b.bin'))
File.utime(Time.at(1_000_000_000), Time.at(1_000_000_003), File.join(local, 'src/sub'))

$stdout.sync = true
# with_ssh runs f on an SSH connection of its own, closed after it: a
# failed scp leaves its channel to raise again when it closes, which
# this swallows, so that each step answers for itself.
with_ssh = lambda do |&f|
  ssh = Net::SSH.start('127.0.0.1', user, password: password, port: port.to_i, verify_host_key: :never,
                                        non_interactive: true, auth_methods: ['password'], timeout: 20)
  begin
    f.call(ssh)
  ensure
    begin
      ssh.close
    rescue StandardError
      nil
    end
  end
end

begin
  step = lambda do |name, &f|
    result = begin
      f.call
    rescue Net::SFTP::StatusException => e
      "SFTP error #{e.code}"
    rescue StandardError => e
      "#{e.class}: #{e.message}"
    end
    result = result.gsub(base, '') if result.is_a?(String) && !base.empty?
    puts JSON.generate({ step: name, result: result })
  end
  src = File.join(local, 'src')
  step.call('scp: upload a file') { with_ssh.call { |ssh| ssh.scp.upload!(File.join(src, 'a.txt'), "#{base}/a.txt") } }
  step.call('scp: upload a file, preserve') { with_ssh.call { |ssh| ssh.scp.upload!(File.join(src, 'a.txt'), "#{base}/ap.txt", preserve: true) } }
  step.call('scp: upload a tree, recursive and preserve') { with_ssh.call { |ssh| ssh.scp.upload!(src, "#{base}/tree", recursive: true, preserve: true) } }
  step.call('scp: upload a tree into it') { with_ssh.call { |ssh| ssh.scp.upload!(src, "#{base}/tree", recursive: true) } }
  step.call('scp: upload a string') { with_ssh.call { |ssh| ssh.scp.upload!(StringIO.new("from a string\n"), "#{base}/str.txt") } }
  step.call('scp: upload a string, mode 0600') { with_ssh.call { |ssh| ssh.scp.upload!(StringIO.new("mode\n"), "#{base}/str600.txt", mode: 0o600) } }
  step.call('scp: upload an empty string') { with_ssh.call { |ssh| ssh.scp.upload!(StringIO.new(''), "#{base}/empty.txt") } }
  step.call('scp: download to a string') { with_ssh.call { |ssh| ssh.scp.download!("#{base}/tree/a.txt") } }
  step.call('scp: download a tree, preserve') do
    with_ssh.call { |ssh| ssh.scp.download!("#{base}/tree", File.join(local, 'dl1'), recursive: true, preserve: true) }
    tree(File.join(local, 'dl1'))
  end
  step.call('scp: download a missing file') { with_ssh.call { |ssh| ssh.scp.download!("#{base}/nosuch") } }
  step.call('scp: upload into a missing directory') { with_ssh.call { |ssh| ssh.scp.upload!(File.join(src, 'a.txt'), "#{base}/nodir/x") } }
  step.call('scp: upload onto a 0444 file') do
    with_ssh.call { |ssh| ssh.scp.upload!(StringIO.new("ro\n"), "#{base}/ro.txt") }
    with_ssh.call { |ssh| ssh.sftp.connect { |s| s.setstat!("#{base}/ro.txt", permissions: 0o444) } }
    with_ssh.call { |ssh| ssh.scp.upload!(StringIO.new("rw\n"), "#{base}/ro.txt") }
  end
  with_ssh.call { |ssh| ssh.sftp.connect do |sftp|
    step.call('sftp: upload a file') { sftp.upload!(File.join(src, 'a.txt'), "#{base}/s.txt"); 'ok' }
    step.call('sftp: upload a tree, mkdir') { sftp.upload!(src, "#{base}/stree", mkdir: true); 'ok' }
    step.call('sftp: upload a tree, mkdir, again') { sftp.upload!(src, "#{base}/stree", mkdir: true); 'ok' }
    step.call('sftp: upload a tree into it') { sftp.upload!(src, "#{base}/stree"); 'ok' }
    step.call('sftp: upload a tree to a missing directory') { sftp.upload!(src, "#{base}/nodir/x"); 'ok' }
    step.call('sftp: upload a string') { sftp.upload!(StringIO.new("str\n"), "#{base}/sstr.txt"); 'ok' }
    step.call('sftp: download a tree') do
      sftp.download!("#{base}/stree", File.join(local, 'dl2'), recursive: true)
      tree(File.join(local, 'dl2')).map { |l| l.sub(/ now$/, '') }
    end
    step.call('sftp: download to a string') { sftp.download!("#{base}/s.txt") }
    step.call('sftp: mkdir') { sftp.mkdir!("#{base}/sd", permissions: 0o750); 'ok' }
    step.call('sftp: mkdir again') { sftp.mkdir!("#{base}/sd"); 'ok' }
    step.call('sftp: its mode') { format('%o', sftp.stat!("#{base}/sd").permissions & 07777) }
    step.call('sftp: symlink') { sftp.symlink!('../s.txt', "#{base}/sd/ln"); 'ok' }
    step.call('sftp: readlink') { sftp.readlink!("#{base}/sd/ln").name }
    step.call('sftp: lstat and stat of the link') { [sftp.lstat!("#{base}/sd/ln").symlink?, sftp.stat!("#{base}/sd/ln").size] }
    step.call('sftp: rename') { sftp.rename!("#{base}/sstr.txt", "#{base}/sd/moved.txt"); 'ok' }
    step.call('sftp: rename a missing file') { sftp.rename!("#{base}/nosuch", "#{base}/x"); 'ok' }
    step.call('sftp: setstat mode and times') { sftp.setstat!("#{base}/sd/moved.txt", permissions: 0o600, atime: 1_000_000_000, mtime: 1_000_000_005); 'ok' }
    step.call('sftp: stat after it') do
      a = sftp.stat!("#{base}/sd/moved.txt")
      [format('%o', a.permissions), a.mtime, a.size]
    end
    step.call('sftp: write, append mode') do
      sftp.file.open("#{base}/sd/moved.txt", 'a') { |f| f.write("more\n") }
      sftp.download!("#{base}/sd/moved.txt")
    end
    step.call('sftp: write in place, r+') do
      sftp.file.open("#{base}/sd/moved.txt", 'r+') { |f| f.pos = 1; f.write('T') }
      sftp.download!("#{base}/sd/moved.txt")
    end
    step.call('sftp: read lines') { sftp.file.open("#{base}/sd/moved.txt", 'r') { |f| [f.gets, f.gets, f.eof?] } }
    step.call('sftp: entries') { sftp.dir.entries("#{base}/sd").map(&:name).sort }
    step.call('sftp: glob') { sftp.dir.glob("#{base}/stree", '**/*').map(&:name).sort }
    step.call('sftp: entries of a missing directory') { sftp.dir.entries("#{base}/nosuch").map(&:name) }
    step.call('sftp: remove a directory with remove') { sftp.remove!("#{base}/sd"); 'ok' }
    step.call('sftp: rmdir a non-empty directory') { sftp.rmdir!("#{base}/sd"); 'ok' }
    step.call('sftp: remove its files, then rmdir') do
      sftp.remove!("#{base}/sd/moved.txt")
      sftp.remove!("#{base}/sd/ln")
      sftp.rmdir!("#{base}/sd")
      'ok'
    end
    step.call('sftp: remove a missing file') { sftp.remove!("#{base}/nosuch"); 'ok' }
    step.call('sftp: realpath of ..') { sftp.realpath!("#{base}/stree/sub/..").name }
  end }
end
