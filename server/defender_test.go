package server_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"golang.org/x/crypto/ssh"
)

func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ftpLogin(t *testing.T, src, addr, user, pw string) error {
	t.Helper()
	c, err := ftp.Dial(addr, ftp.DialWithTimeout(10*time.Second), ftp.DialWithDialFunc(func(network, address string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
		return d.Dial(network, address)
	}))
	if err != nil {
		return err
	}
	defer c.Quit()
	return c.Login(user, pw)
}

func sshLogin(t *testing.T, src, addr, user, pw string) error {
	t.Helper()
	conn := dialFrom(t, src, addr)
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.Password(pw)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		conn.Close()
		return err
	}
	go ssh.DiscardRequests(reqs)
	go func() {
		for c := range chans {
			c.Reject(ssh.Prohibited, "")
		}
	}()
	return sc.Close()
}

// TestDefenderBansAcrossProtocols: 50 wrong passwords from 127.0.0.2, over
// FTP and SFTP alike, ban that address (refused at connect, and a login on
// a connection opened before the ban fails too), while the right password
// from 127.0.0.1 still works.
func TestDefenderBansAcrossProtocols(t *testing.T) {
	srv, _ := startAll(t)
	ftpAddr, sftpAddr := srv.FTPAddr.String(), srv.SFTPAddr.String()
	// Opened before the ban: it must not be able to keep guessing.
	early, err := ftp.Dial(ftpAddr, ftp.DialWithTimeout(10*time.Second), ftp.DialWithDialFunc(func(network, address string) (net.Conn, error) {
		return dialFrom(t, "127.0.0.2", address), nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer early.Quit()

	banned := false
	for i := 0; i < 50 && !banned; i++ {
		var err error
		if i%2 == 0 {
			err = ftpLogin(t, "127.0.0.2", ftpAddr, "alice", "wrong")
		} else {
			err = sshLogin(t, "127.0.0.2", sftpAddr, "alice", "wrong")
		}
		if err == nil {
			t.Fatal("a wrong password logged in")
		}
		if strings.Contains(err.Error(), "banned") {
			banned = true
		}
	}
	if !banned {
		t.Fatal("50 wrong passwords did not get 127.0.0.2 banned")
	}
	// Refused at connect over both protocols, with the reason.
	if err := ftpLogin(t, "127.0.0.2", ftpAddr, "alice", "pw"); err == nil || !strings.Contains(err.Error(), "banned") {
		t.Errorf("FTP from the banned address with the right password: %v", err)
	}
	if err := sshLogin(t, "127.0.0.2", sftpAddr, "alice", "pw"); err == nil || !strings.Contains(err.Error(), "banned") {
		t.Errorf("SSH from the banned address: %v", err)
	}
	if err := early.Login("alice", "pw"); err == nil {
		t.Error("a connection opened before the ban still logs in")
	}
	// Another address is unaffected.
	if err := ftpLogin(t, "127.0.0.1", ftpAddr, "alice", "pw"); err != nil {
		t.Errorf("FTP from 127.0.0.1: %v", err)
	}
	if err := sshLogin(t, "127.0.0.1", sftpAddr, "alice", "pw"); err != nil {
		t.Errorf("SSH from 127.0.0.1: %v", err)
	}
	if !metric(t, srv.AdminAddr.String(), "upgate_defender_bans_total 1") {
		t.Error("the ban is not in the metrics")
	}
}
