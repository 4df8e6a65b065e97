package server_test

// Hostile tests of issue 14 ("Hardening"): each performs an attack against
// a running gateway with real clients and checks the outcome: a clear
// refusal in the protocol's terms, nothing written, the other user
// unaffected.

import (
	"strings"
	"testing"
)

// TestHardeningDefenderSuccessDoesNotForgiveOtherNames: nine wrong
// passwords for bob, then a good login as alice, from one address,
// repeated. A success used to wipe the address's failures, so this ran 36
// guesses a minute for ever; now the tenth guess at bob bans the address.
func TestHardeningDefenderSuccessDoesNotForgiveOtherNames(t *testing.T) {
	srv, _ := startAll(t)
	ftpAddr, sftpAddr := srv.FTPAddr.String(), srv.SFTPAddr.String()
	const attacker = "127.0.0.3"
	guesses, banned := 0, false
	for round := 0; round < 4 && !banned; round++ {
		for i := 0; i < 9 && !banned; i++ {
			var err error
			if i%2 == 0 {
				err = ftpLogin(t, attacker, ftpAddr, "bob", "guess")
			} else {
				err = sshLogin(t, attacker, sftpAddr, "bob", "guess")
			}
			if err == nil {
				t.Fatal("a wrong password for bob logged in")
			}
			if strings.Contains(err.Error(), "banned") {
				banned = true
				break
			}
			guesses++
		}
		if banned {
			break
		}
		if err := ftpLogin(t, attacker, ftpAddr, "alice", "pw"); err != nil {
			if strings.Contains(err.Error(), "banned") {
				banned = true
				break
			}
			t.Fatalf("round %d: alice's good login: %v", round, err)
		}
	}
	if !banned {
		t.Fatalf("%d guesses at bob interleaved with alice's logins: never banned", guesses)
	}
	if guesses > 10 {
		t.Errorf("banned only after %d guesses at bob; defender.max_failures is 10", guesses)
	}
	// The ban is clear on both protocols, alice's password included.
	if err := ftpLogin(t, attacker, ftpAddr, "alice", "pw"); err == nil || !strings.Contains(err.Error(), "421") || !strings.Contains(err.Error(), "banned") {
		t.Errorf("FTP from the banned address: %v, want a 421 naming the ban", err)
	}
	if err := sshLogin(t, attacker, sftpAddr, "alice", "pw"); err == nil || !strings.Contains(err.Error(), "banned") {
		t.Errorf("SSH from the banned address: %v, want a disconnect naming the ban", err)
	}
	// Nobody else is affected.
	if err := ftpLogin(t, "127.0.0.1", ftpAddr, "bob", "pw"); err != nil {
		t.Errorf("bob from 127.0.0.1: %v", err)
	}
	if err := sshLogin(t, "127.0.0.1", sftpAddr, "alice", "pw"); err != nil {
		t.Errorf("alice over SSH from 127.0.0.1: %v", err)
	}
	// A user's own typos, each round ended by their own login, are
	// forgiven: 3 x 5 wrong passwords for alice, never banned.
	const typist = "127.0.0.4"
	for round := range 5 {
		for range 3 {
			if err := ftpLogin(t, typist, ftpAddr, "alice", "typo"); err == nil || strings.Contains(err.Error(), "banned") {
				t.Fatalf("round %d: alice's typo: %v", round, err)
			}
		}
		if err := sshLogin(t, typist, sftpAddr, "alice", "pw"); err != nil {
			t.Fatalf("round %d: alice after her typos: %v", round, err)
		}
	}
}
