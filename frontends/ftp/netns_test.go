package ftp_test

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

// netns is a private network namespace joined to the test's namespace by
// a veth pair with a /30 of its own: the gateway listens on HostIP, a
// client runs inside the namespace at PeerIP, and pulling the cable there
// touches nothing else on the machine.
type netns struct {
	Name   string // namespace
	HostIf string // veth end in the test's namespace
	PeerIf string // veth end inside the namespace
	HostIP netip.Addr
	PeerIP netip.Addr
}

// requireNetns skips unless the test runs as root with a working `ip
// netns`; UPGATE_REQUIRE_INTEROP=1 makes that a failure.
func requireNetns(t *testing.T) {
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

// netnsMu serialises picking a subnet and creating it, so parallel tests
// of this process never pick the same one.
var netnsMu sync.Mutex

// newNetns creates the namespace, the veth pair and the addresses. Both
// are deleted in t.Cleanup, whatever happens.
func newNetns(t *testing.T) *netns {
	t.Helper()
	requireNetns(t)
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	h := hex.EncodeToString(id[:])
	n := &netns{Name: "upg-" + h, HostIf: "upgh" + h, PeerIf: "upgp" + h}

	netnsMu.Lock()
	defer netnsMu.Unlock()
	prefix, err := freeSubnet()
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

// addDataPath joins the namespace to the test's namespace by a second
// veth pair with a /30 of its own and returns the host's address on it. A
// client that sends its FTP data connections there (from its address on
// the first pair, so the gateway still pairs them with the control
// connection) keeps its data flowing when the first pair's cable is
// pulled: only the control connection vanishes. Replies to the client
// all come back over the first pair, whose incoming direction stays up.
func (n *netns) addDataPath(t *testing.T) netip.Addr {
	t.Helper()
	for _, f := range []string{"all", "default"} {
		if b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + f + "/rp_filter"); err == nil && strings.TrimSpace(string(b)) == "1" {
			t.Skipf("strict reverse-path filtering (net.ipv4.conf.%s.rp_filter=1) drops the asymmetric data path", f)
		}
	}
	hostIf, peerIf := n.HostIf+"d", n.PeerIf+"d"
	netnsMu.Lock()
	defer netnsMu.Unlock()
	prefix, err := freeSubnet()
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

// freeSubnet picks a random 10.231.X.Y/30 that no interface of the test's
// namespace uses.
func freeSubnet() (netip.Prefix, error) {
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
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 231, byte(mrand.IntN(256)), byte(4 * mrand.IntN(64))}), 30)
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
	return netip.Prefix{}, fmt.Errorf("no free /30 in 10.231.0.0/16")
}

// pullCable makes the peer vanish without a FIN or an RST: every packet
// the namespace sends (ACKs, FIN, RST, ARP replies) is dropped, as when a
// laptop loses the network. The host end keeps its carrier, as a server's
// NIC does. It uses a blackhole qdisc, or, where the kernel lacks one,
// takes the namespace's end of the link down. It returns which.
func (n *netns) pullCable(t *testing.T) string {
	t.Helper()
	out, err := ipCmd("netns", "exec", n.Name, "tc", "qdisc", "add", "dev", n.PeerIf, "root", "blackhole")
	if err == nil {
		return "blackhole qdisc on " + n.PeerIf
	}
	t.Logf("blackhole qdisc unavailable (%v: %s): taking the link down instead", err, out)
	if out, err := ipCmd("-n", n.Name, "link", "set", "dev", n.PeerIf, "down"); err != nil {
		t.Fatalf("pull the cable: %v: %s", err, out)
	}
	return "link " + n.PeerIf + " down"
}

// established lists the host's ESTABLISHED TCP connections to the peer, as
// `ss -tnoH state established dst PEER` shows them (timers included).
func (n *netns) established(t *testing.T) []string {
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
