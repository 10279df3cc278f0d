package network

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
)

// inFreshNetNS runs f on a thread in a new network namespace (its own
// nftables ruleset), bind-mounted at a temp path for tools like nsenter.
func inFreshNetNS(t *testing.T, f func(nsPath string)) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ns")
	if err := newNetNS(path); err != nil {
		t.Fatal(err)
	}
	defer removeNetNS(path)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		ns, err := netns.GetFromPath(path)
		if err != nil {
			t.Error(err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			t.Error(err)
			return
		}
		f(path)
	}()
	<-done
}

// With dockerd's FORWARD drop policy in the iptables-nft filter table,
// berth adds its accepts there in a form iptables itself reads, removes
// exactly those again, and leaves every other rule alone.
func TestForwardAcceptsUnderDropPolicy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	iptables, err := exec.LookPath("iptables-nft")
	if err != nil {
		t.Skip("needs iptables-nft")
	}
	inFreshNetNS(t, func(nsPath string) {
		c, err := nftables.New()
		if err != nil {
			t.Error(err)
			return
		}
		filter := c.AddTable(&nftables.Table{Name: "filter", Family: nftables.TableFamilyIPv4})
		drop := nftables.ChainPolicyDrop
		fwd := c.AddChain(&nftables.Chain{Name: "FORWARD", Table: filter, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
		// Someone else's rule, which must survive.
		c.AddRule(&nftables.Rule{Table: filter, Chain: fwd, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte("other0\x00")},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
		if err := c.Flush(); err != nil {
			t.Error(err)
			return
		}
		fw := newFirewall("berth_fwtest")
		if err := fw.reset(); err != nil {
			t.Error(err)
			return
		}
		n := &Network{ID: strings.Repeat("a", 64), Name: "n", Bridge: "brfwtest"}
		if err := fw.addNetwork(n); err != nil {
			t.Error(err)
			return
		}
		out, err := exec.Command("nsenter", "--net="+nsPath, iptables, "-S", "FORWARD").CombinedOutput()
		s := string(out)
		if err != nil || strings.Contains(s, "incompatible") || strings.Contains(s, "Warning") {
			t.Errorf("iptables -S FORWARD: %v\n%s", err, s)
		}
		for _, want := range []string{"-P FORWARD DROP", "-A FORWARD -i brfwtest", "-A FORWARD -o brfwtest", "-A FORWARD -i other0 -j ACCEPT"} {
			if !strings.Contains(s, want) {
				t.Errorf("iptables -S FORWARD lacks %q:\n%s", want, s)
			}
		}
		// A second check adds nothing twice.
		fw.ensureForwardAccepts([]string{"brfwtest"}, true)
		if out, _ := exec.Command("nsenter", "--net="+nsPath, iptables, "-S", "FORWARD").CombinedOutput(); strings.Count(string(out), "-i brfwtest") != 1 {
			t.Errorf("accepts duplicated:\n%s", out)
		}
		if err := fw.removeNetwork(n); err != nil {
			t.Error(err)
		}
		if err := fw.destroy(); err != nil {
			t.Error(err)
		}
		out, _ = exec.Command("nsenter", "--net="+nsPath, iptables, "-S", "FORWARD").CombinedOutput()
		s = string(out)
		if strings.Contains(s, "brfwtest") || !strings.Contains(s, "-A FORWARD -i other0 -j ACCEPT") || !strings.Contains(s, "-P FORWARD DROP") {
			t.Errorf("after removal:\n%s", s)
		}
		if tables, _ := c.ListTables(); len(tables) != 1 {
			t.Errorf("tables left: %d", len(tables))
		}
	})
}
