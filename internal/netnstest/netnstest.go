// Package netnstest gives a test a private network namespace joined to its
// own by a veth pair, for tests that pull a client's cable: the gateway
// listens on the host end, a client runs inside the namespace, and pulling
// the cable there touches nothing else on the machine. It needs root and a
// working `ip netns`; Require skips otherwise, and UPGATE_REQUIRE_INTEROP=1
// makes that a failure.
package netnstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Prefix says how a package's namespaces are named and addressed. Test
// packages run as parallel processes, so each uses a Prefix of its own:
// their names and subnets never collide.
type Prefix struct {
	Netns  string // namespace name prefix, e.g. "upg-"
	HostIf string // prefix of the veth end in the test's namespace
	PeerIf string // prefix of the veth end inside the namespace
	Octet  byte   // the /30s come from 10.Octet.0.0/16
}

// Netns is a private network namespace joined to the test's namespace by
// a veth pair with a /30 of its own: the gateway (or a relay) listens on
// HostIP, a client runs inside the namespace at PeerIP, and pulling the
// cable there touches nothing else on the machine.
type Netns struct {
	Name   string // namespace
	HostIf string // veth end in the test's namespace
	PeerIf string // veth end inside the namespace
	HostIP netip.Addr
	PeerIP netip.Addr

	octet byte
}

// Require skips unless the test runs as root with a working `ip netns`;
// UPGATE_REQUIRE_INTEROP=1 makes that a failure.
func Require(t *testing.T) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("UPGATE_REQUIRE_INTEROP") == "1" {
			t.Fatalf(format+" (UPGATE_REQUIRE_INTEROP=1)", args...)
		}
		t.Skipf(format, args...)
	}
	if os.Geteuid() != 0 {
		fail("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		fail("ip (iproute2) not installed: %v", err)
	}
	if out, err := ipCmd("netns", "list"); err != nil {
		fail("ip netns unavailable: %v: %s", err, out)
	}
}

// ipCmd runs ip with args, bounded.
func ipCmd(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// mu serialises picking a subnet and creating it, so parallel tests of
// this process never pick the same one.
var mu sync.Mutex

// New creates the namespace, the veth pair and the addresses, named and
// addressed after p. All are deleted in t.Cleanup, whatever happens.
func New(t *testing.T, p Prefix) *Netns {
	t.Helper()
	Require(t)
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	h := hex.EncodeToString(id[:])
	n := &Netns{Name: p.Netns + h, HostIf: p.HostIf + h, PeerIf: p.PeerIf + h, octet: p.Octet}

	mu.Lock()
	defer mu.Unlock()
	prefix, err := FreeSubnet(p.Octet)
	if err != nil {
		t.Fatal(err)
	}
	n.HostIP = prefix.Addr().Next()
	n.PeerIP = n.HostIP.Next()

	t.Cleanup(func() {
		// Deleting the namespace destroys the veth end inside it and so
		// the pair; deleting the host end covers a half-built pair.
		if out, err := ipCmd("netns", "del", n.Name); err != nil {
			t.Logf("ip netns del %s: %v: %s", n.Name, err, out)
		}
		_, _ = ipCmd("link", "del", n.HostIf)
	})
	steps := [][]string{
		{"netns", "add", n.Name},
		{"link", "add", n.HostIf, "type", "veth", "peer", "name", n.PeerIf, "netns", n.Name},
		{"addr", "add", n.HostIP.String() + "/30", "dev", n.HostIf},
		{"link", "set", n.HostIf, "up"},
		{"-n", n.Name, "addr", "add", n.PeerIP.String() + "/30", "dev", n.PeerIf},
		{"-n", n.Name, "link", "set", n.PeerIf, "up"},
		{"-n", n.Name, "link", "set", "lo", "up"},
	}
	for i, s := range steps {
		if out, err := ipCmd(s...); err != nil {
			if i == 0 && os.Getenv("UPGATE_REQUIRE_INTEROP") != "1" {
				t.Skipf("cannot create a network namespace: ip %s: %v: %s", strings.Join(s, " "), err, out)
			}
			t.Fatalf("ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	return n
}

// AddDataPath joins the namespace to the test's namespace by a second
// veth pair with a /30 of its own and returns the host's address on it. A
// client that sends its FTP data connections there (from its address on
// the first pair, so the gateway still pairs them with the control
// connection) keeps its data flowing when the first pair's cable is
// pulled: only the control connection vanishes. Replies to the client
// all come back over the first pair, whose incoming direction stays up.
func (n *Netns) AddDataPath(t *testing.T) netip.Addr {
	t.Helper()
	for _, f := range []string{"all", "default"} {
		if b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + f + "/rp_filter"); err == nil && strings.TrimSpace(string(b)) == "1" {
			t.Skipf("strict reverse-path filtering (net.ipv4.conf.%s.rp_filter=1) drops the asymmetric data path", f)
		}
	}
	hostIf, peerIf := n.HostIf+"d", n.PeerIf+"d"
	mu.Lock()
	defer mu.Unlock()
	prefix, err := FreeSubnet(n.octet)
	if err != nil {
		t.Fatal(err)
	}
	host := prefix.Addr().Next()
	t.Cleanup(func() { _, _ = ipCmd("link", "del", hostIf) })
	steps := [][]string{
		{"link", "add", hostIf, "type", "veth", "peer", "name", peerIf, "netns", n.Name},
		{"addr", "add", host.String() + "/30", "dev", hostIf},
		{"link", "set", hostIf, "up"},
		{"-n", n.Name, "addr", "add", host.Next().String() + "/30", "dev", peerIf},
		{"-n", n.Name, "link", "set", peerIf, "up"},
	}
	for _, s := range steps {
		if out, err := ipCmd(s...); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	// A new namespace usually starts with rp_filter off; make sure.
	if out, err := ipCmd("netns", "exec", n.Name, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0",
		"net.ipv4.conf."+peerIf+".rp_filter=0", "net.ipv4.conf."+n.PeerIf+".rp_filter=0"); err != nil {
		t.Logf("sysctl rp_filter in %s: %v: %s", n.Name, err, out)
	}
	return host
}

// FreeSubnet picks a random 10.octet.X.Y/30 that no interface of the
// test's namespace uses. New and AddDataPath call it under a lock held
// until the subnet is configured; other callers in the same process may
// race them.
func FreeSubnet(octet byte) (netip.Prefix, error) {
	out, err := ipCmd("-4", "-o", "addr", "show")
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("ip addr show: %v: %s", err, out)
	}
	var used []netip.Prefix
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" {
				if p, err := netip.ParsePrefix(f[i+1]); err == nil {
					used = append(used, p.Masked())
				}
			}
		}
	}
	for range 100 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, octet, byte(mrand.IntN(256)), byte(4 * mrand.IntN(64))}), 30)
		free := true
		for _, u := range used {
			if u.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free /30 in 10.%d.0.0/16", octet)
}

// PullCable makes the peer vanish without a FIN or an RST: every packet
// the namespace sends (ACKs, FIN, RST, ARP replies) is dropped, as when a
// laptop loses the network. The host end keeps its carrier, as a server's
// NIC does. It uses a blackhole qdisc, or, where the kernel lacks one,
// takes the namespace's end of the link down (UPGATE_CABLE_PULL=link asks
// for that). It returns which.
func (n *Netns) PullCable(t *testing.T) string {
	t.Helper()
	if os.Getenv("UPGATE_CABLE_PULL") != "link" {
		out, err := ipCmd("netns", "exec", n.Name, "tc", "qdisc", "add", "dev", n.PeerIf, "root", "blackhole")
		if err == nil {
			return "blackhole qdisc on " + n.PeerIf
		}
		t.Logf("blackhole qdisc unavailable (%v: %s): taking the link down instead", err, out)
	}
	if out, err := ipCmd("-n", n.Name, "link", "set", "dev", n.PeerIf, "down"); err != nil {
		t.Fatalf("pull the cable: %v: %s", err, out)
	}
	return "link " + n.PeerIf + " down"
}

// Established lists the host's ESTABLISHED TCP connections to the peer, as
// `ss -tnoH state established dst PEER` shows them (timers included).
func (n *Netns) Established(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ss", "-tnoH", "state", "established", "dst", n.PeerIP.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, strings.Join(strings.Fields(l), " "))
		}
	}
	return lines
}
