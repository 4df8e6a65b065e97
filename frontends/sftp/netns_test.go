package sftp_test

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
// a veth pair with a /30 of its own: the gateway (or a relay) listens on
// HostIP, a client runs inside the namespace at PeerIP, and pulling the
// cable there touches nothing else on the machine.
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

// newNetns creates the namespace, the veth pair and the addresses. All
// are deleted in t.Cleanup, whatever happens.
func newNetns(t *testing.T) *netns {
	t.Helper()
	requireNetns(t)
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	h := hex.EncodeToString(id[:])
	n := &netns{Name: "upgs-" + h, HostIf: "ush" + h, PeerIf: "usp" + h}

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

// freeSubnet picks a random 10.232.X.Y/30 that no interface of the test's
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
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 232, byte(mrand.IntN(256)), byte(4 * mrand.IntN(64))}), 30)
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
	return netip.Prefix{}, fmt.Errorf("no free /30 in 10.232.0.0/16")
}

// pullCable makes the peer vanish without a FIN or an RST: every packet
// the namespace sends (ACKs, FIN, RST, ARP replies) is dropped, as when a
// laptop loses the network. The host end keeps its carrier, as a server's
// NIC does. It uses a blackhole qdisc, or, where the kernel lacks one,
// takes the namespace's end of the link down (UPGATE_CABLE_PULL=link asks
// for that). It returns which.
func (n *netns) pullCable(t *testing.T) string {
	t.Helper()
	if os.Getenv("UPGATE_CABLE_PULL") != "link" {
		out, err := ipCmd("netns", "exec", n.Name, "tc", "qdisc", "add", "dev", n.PeerIf, "root", "blackhole")
		if err == nil {
			return "blackhole qdisc on " + n.PeerIf
		}
		t.Logf("blackhole qdisc unavailable (%v: %s): taking the link down instead", err, out)
	}
	if out, err := ipCmd("netns", "exec", n.Name, "ip", "link", "set", "dev", n.PeerIf, "down"); err != nil {
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
