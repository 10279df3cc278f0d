package integration

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/testutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// linkExists reports whether a network device exists on the host.
func linkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// fastpathProg is the BPF program ID of berth's ingress filter on a
// container's host-side veth (0: none).
func fastpathProg(t *testing.T, veth string) int {
	t.Helper()
	l, err := netlink.LinkByName(veth)
	if err != nil {
		t.Fatalf("veth %s: %v", veth, err)
	}
	fs, _ := netlink.FilterList(l, netlink.HANDLE_MIN_INGRESS)
	for _, f := range fs {
		if bf, ok := f.(*netlink.BpfFilter); ok && bf.Name == "berth_fastpath" {
			return bf.Id
		}
	}
	return 0
}

// bridgePorts are the devices enslaved to a bridge.
func bridgePorts(t *testing.T, bridge string) []string {
	t.Helper()
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		t.Fatalf("bridge %s: %v", bridge, err)
	}
	links, _ := netlink.LinkList()
	var out []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

// netnsFiles are the namespaces the daemon has bind-mounted.
func netnsFiles(d *testutil.Daemon) []string {
	f, _ := filepath.Glob(filepath.Join(d.ExecRoot, "netns", "*"))
	return f
}

// The default bridge: a container gets an address from the bridge's
// subnet, a default route, docker's /etc files; it reaches another
// container and the host; stop releases its veth and namespace.
func TestNetworkDefaultBridge(t *testing.T) {
	d := daemonWithBusybox(t)
	for _, cli := range []string{"berth", "docker"} {
		t.Run(cli, func(t *testing.T) {
			if cli == "docker" {
				testutil.RequiresDockerCLI(t)
			}
			run := func(args ...string) string {
				if cli == "docker" {
					return d.MustDocker(t, args...)
				}
				return d.MustBerth(t, args...)
			}
			srv := strings.TrimSpace(run("run", "-d", "--hostname", "srvhost", "--add-host", "extra.example:10.1.2.3",
				"--dns", "10.0.0.53", "--dns-search", "example.org", "--dns-option", "ndots:2",
				"busybox", "sh", "-c", "echo hello | nc -l -p 7000; sleep 100"))
			defer d.Berth(t, "rm", "-f", srv)
			ip := inspectField(t, d, srv, "{{.NetworkSettings.Networks.bridge.IPAddress}}")
			gw := inspectField(t, d, srv, "{{.NetworkSettings.Networks.bridge.Gateway}}")
			if net.ParseIP(ip) == nil || net.ParseIP(gw) == nil {
				t.Fatalf("address %q gateway %q", ip, gw)
			}
			if cli == "docker" {
				// API < 1.52 keeps the default bridge's endpoint at the top.
				if got := strings.TrimSpace(run("inspect", "-f", "{{.NetworkSettings.IPAddress}} {{.NetworkSettings.Gateway}}", srv)); got != ip+" "+gw {
					t.Errorf("legacy .NetworkSettings.IPAddress: %q", got)
				}
			}
			if key := inspectField(t, d, srv, "{{.NetworkSettings.SandboxKey}}"); !strings.HasPrefix(key, d.ExecRoot) {
				t.Errorf("SandboxKey %q", key)
			}
			if got := len(bridgePorts(t, d.Bridge)); got != 1 {
				t.Errorf("%d ports on the bridge, want 1", got)
			}
			hosts := run("exec", srv, "cat", "/etc/hosts")
			for _, want := range []string{"127.0.0.1\tlocalhost", ip + "\tsrvhost", "10.1.2.3\textra.example"} {
				if !strings.Contains(hosts, want) {
					t.Errorf("/etc/hosts lacks %q:\n%s", want, hosts)
				}
			}
			if got := run("exec", srv, "cat", "/etc/resolv.conf"); got != "nameserver 10.0.0.53\nsearch example.org\noptions ndots:2\n" {
				t.Errorf("resolv.conf:\n%s", got)
			}
			if got := strings.TrimSpace(run("exec", srv, "hostname")); got != "srvhost" {
				t.Errorf("hostname %q", got)
			}
			if route := run("exec", srv, "ip", "route"); !strings.Contains(route, "default via "+gw) {
				t.Errorf("routes:\n%s", route)
			}
			// Container → container over the bridge, and container → host
			// (the gateway address is the host's).
			eventually(t, "the server to listen", func() bool {
				return strings.Contains(run("exec", srv, "netstat", "-ltn"), ":7000")
			})
			if got := run("run", "--rm", "busybox", "nc", ip, "7000"); got != "hello\n" {
				t.Errorf("container to container: %q", got)
			}
			if netIO := strings.TrimSpace(run("stats", "--no-stream", "--format", "{{.NetIO}}", srv)); netIO == "" || strings.HasPrefix(netIO, "0B") {
				t.Errorf("stats NET I/O after traffic: %q", netIO)
			}
			l, err := net.Listen("tcp", gw+":0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				if c, err := l.Accept(); err == nil {
					fmt.Fprintln(c, "from host")
					c.Close()
				}
			}()
			_, port, _ := net.SplitHostPort(l.Addr().String())
			if got := run("run", "--rm", "busybox", "nc", gw, port); got != "from host\n" {
				t.Errorf("container to host: %q", got)
			}
			run("rm", "-f", srv)
			// The kernel removes the veths with the namespace, in the
			// background.
			eventually(t, "the veths to leave the bridge", func() bool { return len(bridgePorts(t, d.Bridge)) == 0 })
			if f := netnsFiles(d); len(f) != 0 {
				t.Errorf("namespaces left: %v", f)
			}
		})
	}
}

// Published ports: DNAT for the host's own clients on 127.0.0.1 and its
// addresses, ephemeral ports, -P, `port`, ps, conflicts.
func TestNetworkPublishedPorts(t *testing.T) {
	d := daemonWithBusybox(t)
	serve := "while true; do echo pong | nc -l -p 80; done"
	for _, cli := range []string{"berth", "docker"} {
		t.Run(cli, func(t *testing.T) {
			if cli == "docker" {
				testutil.RequiresDockerCLI(t)
			}
			res := func(args ...string) testutil.Result {
				if cli == "docker" {
					return d.Docker(t, args...)
				}
				return d.Berth(t, args...)
			}
			run := func(args ...string) string {
				r := res(args...)
				if r.ExitCode != 0 {
					t.Fatalf("%s %v: %s", cli, args, r)
				}
				return r.Stdout
			}
			hostPort := freePortString(t)
			web := strings.TrimSpace(run("run", "-d", "-p", "127.0.0.1:"+hostPort+":80", "-p", "81/udp", "busybox", "sh", "-c", serve))
			defer d.Berth(t, "rm", "-f", web)
			eventually(t, "the published port to answer", func() bool { return dialRead("127.0.0.1:"+hostPort) == "pong\n" })
			if got := run("port", web, "80"); got != "127.0.0.1:"+hostPort+"\n" {
				t.Errorf("port 80: %q", got)
			}
			udp := strings.TrimSpace(run("port", web, "81/udp"))
			if !strings.HasPrefix(udp, "0.0.0.0:") {
				t.Errorf("port 81/udp: %q", udp)
			}
			ps := run("ps", "--format", "{{.Ports}}", "--filter", "id="+web)
			if !strings.Contains(ps, "127.0.0.1:"+hostPort+"->80/tcp") || !strings.Contains(ps, "->81/udp") {
				t.Errorf("ps ports: %q", ps)
			}
			// The same host port again: docker's conflict, nothing left.
			before := len(bridgePorts(t, d.Bridge))
			r := res("run", "-d", "--name", "clash-"+cli, "-p", "127.0.0.1:"+hostPort+":80", "busybox", "sleep", "100")
			if r.ExitCode == 0 || !strings.Contains(r.Stderr, "port is already allocated") {
				t.Errorf("conflicting port: %s", r)
			}
			d.Berth(t, "rm", "-f", "clash-"+cli)
			eventually(t, "no veth left by the failed start", func() bool { return len(bridgePorts(t, d.Bridge)) == before })
			// -P publishes the EXPOSEd ports on ephemeral host ports, on
			// every host address.
			exp := strings.TrimSpace(run("run", "-d", "--expose", "80", "-P", "busybox", "sh", "-c", serve))
			defer d.Berth(t, "rm", "-f", exp)
			hp := strings.TrimSpace(run("port", exp, "80/tcp"))
			_, p, err := net.SplitHostPort(hp)
			if err != nil {
				t.Fatalf("port of -P: %q", hp)
			}
			eventually(t, "the -P port to answer on 127.0.0.1", func() bool { return dialRead("127.0.0.1:"+p) == "pong\n" })
			if addr := hostAddr(t); addr != "" {
				eventually(t, "the -P port to answer on "+addr, func() bool { return dialRead(net.JoinHostPort(addr, p)) == "pong\n" })
			}
			run("rm", "-f", exp, web)
			if dialRead("127.0.0.1:"+p) == "pong\n" {
				t.Error("the port answers after its container was removed")
			}
		})
	}
}

// hostAddr is a non-loopback IPv4 address of the host ("" if none).
func hostAddr(t *testing.T) string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !strings.HasPrefix(n.IP.String(), "10.") {
			return n.IP.String()
		}
	}
	return ""
}

// freePort is a TCP port free on 127.0.0.1 right now.
// freePortString is freePort as the string a -p flag wants.
func freePortString(t *testing.T) string {
	return strconv.Itoa(freePort(t))
}

// dialRead connects and reads one line ("" on any error).
func dialRead(addr string) string {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	s, _ := bufio.NewReader(c).ReadString('\n')
	return s
}

// User-defined networks: create with docker's flags, name/alias/short-ID
// resolution through the embedded DNS, isolation from other networks,
// --internal, connect/disconnect of a running container, rm refused while
// in use, prune, and the network events.
func TestNetworkUserDefined(t *testing.T) {
	d := daemonWithBusybox(t)
	for i, cli := range []string{"berth", "docker"} {
		t.Run(cli, func(t *testing.T) {
			if cli == "docker" {
				testutil.RequiresDockerCLI(t)
			}
			res := func(args ...string) testutil.Result {
				if cli == "docker" {
					return d.Docker(t, args...)
				}
				return d.Berth(t, args...)
			}
			run := func(args ...string) string {
				r := res(args...)
				if r.ExitCode != 0 {
					t.Fatalf("%s %v: %s", cli, args, r)
				}
				return r.Stdout
			}
			since := time.Now().Add(-time.Second).Unix()
			sub := fmt.Sprintf("10.%d.%d.0/24", 200+i, 10+os.Getpid()%200)
			gw := strings.TrimSuffix(sub, "0/24") + "254"
			net1 := "front-" + cli
			id := strings.TrimSpace(run("network", "create", "--subnet", sub, "--gateway", gw, "--ip-range", strings.TrimSuffix(sub, "0/24")+"128/25",
				"--label", "tier=front", net1))
			defer d.Berth(t, "network", "rm", net1)
			if ls := run("network", "ls", "--filter", "label=tier=front", "--format", "{{.Name}} {{.Driver}} {{.Scope}}"); ls != net1+" bridge local\n" {
				t.Errorf("network ls: %q", ls)
			}
			if got := strings.TrimSpace(run("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}", net1)); got != sub+" "+gw {
				t.Errorf("inspect IPAM: %q", got)
			}
			br := "br-" + id[:12]
			if !linkExists(br) {
				t.Fatalf("bridge %s missing", br)
			}
			// Bad input: overlapping subnet, gateway outside, unknown driver,
			// duplicate name: errors, nothing created.
			for _, args := range [][]string{
				{"network", "create", "--subnet", sub, "dup-" + cli},
				{"network", "create", "--subnet", "10.254.77.0/24", "--gateway", "10.254.78.1", "gw-" + cli},
				{"network", "create", "-d", "nosuchdriver", "drv-" + cli},
				{"network", "create", net1},
			} {
				if r := res(args...); r.ExitCode == 0 {
					t.Errorf("%v succeeded: %s", args, r)
				}
			}
			if n := len(lines(run("network", "ls", "-q"))); n != 4 {
				t.Errorf("%d networks after the bad creates, want 4", n)
			}

			web := strings.TrimSpace(run("run", "-d", "--name", "web-"+cli, "--network", net1, "--network-alias", "www",
				"--ip", strings.TrimSuffix(sub, "0/24")+"200", "busybox", "sh", "-c", "while true; do echo hi | nc -l -p 80; done"))
			defer d.Berth(t, "rm", "-f", web)
			if ip := inspectField(t, d, web, "{{(index .NetworkSettings.Networks \""+net1+"\").IPAddress}}"); ip != strings.TrimSuffix(sub, "0/24")+"200" {
				t.Errorf("--ip: %s", ip)
			}
			if rc := run("exec", web, "cat", "/etc/resolv.conf"); !strings.HasPrefix(rc, "nameserver 127.0.0.11\n") || !strings.Contains(rc, "ndots:0") {
				t.Errorf("resolv.conf on a user network:\n%s", rc)
			}
			for _, name := range []string{"web-" + cli, "www", web[:12]} {
				if got := run("run", "--rm", "--network", net1, "busybox", "nc", name, "80"); got != "hi\n" {
					t.Errorf("nc %s on the network: %q", name, got)
				}
			}
			// A second network: isolated from the first; its containers do
			// not resolve the first's names.
			net2 := "back-" + cli
			run("network", "create", net2)
			defer d.Berth(t, "network", "rm", net2)
			webIP := inspectField(t, d, web, "{{(index .NetworkSettings.Networks \""+net1+"\").IPAddress}}")
			if r := res("run", "--rm", "--network", net2, "busybox", "nc", "-w", "2", webIP, "80"); r.Stdout == "hi\n" {
				t.Errorf("a container on %s reached %s: %s", net2, net1, r)
			}
			if r := res("run", "--rm", "--network", net2, "busybox", "nslookup", "web-"+cli); r.ExitCode == 0 && strings.Contains(r.Stdout, webIP) {
				t.Errorf("name resolved across networks: %s", r)
			}
			// connect/disconnect a running container.
			cl := strings.TrimSpace(run("run", "-d", "--network", net2, "busybox", "sleep", "300"))
			defer d.Berth(t, "rm", "-f", cl)
			run("network", "connect", "--alias", "client", net1, cl)
			if got := run("exec", cl, "nc", "www", "80"); got != "hi\n" {
				t.Errorf("after connect: %q", got)
			}
			if got := run("run", "--rm", "--network", net1, "busybox", "nslookup", "client"); !strings.Contains(got, "Address") {
				t.Errorf("alias of a connected container: %q", got)
			}
			if r := res("network", "rm", net1); r.ExitCode == 0 || !strings.Contains(r.Stderr, "active endpoints") {
				t.Errorf("rm of a network in use: %s", r)
			}
			run("network", "disconnect", net1, cl)
			if r := res("exec", cl, "nc", "-w", "2", webIP, "80"); r.Stdout == "hi\n" {
				t.Errorf("reached %s after disconnect", net1)
			}
			if n := inspectField(t, d, cl, "{{len .NetworkSettings.Networks}}"); n != "1" {
				t.Errorf("%s networks after disconnect", n)
			}
			// --internal: no route out.
			inet := "int-" + cli
			run("network", "create", "--internal", inet)
			defer d.Berth(t, "network", "rm", inet)
			if route := run("run", "--rm", "--network", inet, "busybox", "ip", "route"); strings.Contains(route, "default") {
				t.Errorf("an internal network has a default route:\n%s", route)
			}
			run("rm", "-f", cl, web)
			run("network", "rm", net1, inet)
			if linkExists(br) {
				t.Errorf("bridge %s left after network rm", br)
			}
			if got := run("network", "prune", "-f"); !strings.Contains(got, net2) {
				t.Errorf("prune: %q", got)
			}
			ev := run("events", "--since", fmt.Sprint(since), "--until", fmt.Sprint(time.Now().Unix()+1), "--filter", "type=network", "--format", "{{.Action}} {{.Actor.Attributes.name}}")
			for _, want := range []string{"create " + net1, "connect " + net1, "disconnect " + net1, "destroy " + net1, "destroy " + net2} {
				if !strings.Contains(ev, want) {
					t.Errorf("events lack %q:\n%s", want, ev)
				}
			}
		})
	}
}

// Across a daemon crash (SIGKILL) running containers keep their network:
// the published port answers, names resolve, the addresses stay taken;
// leftovers (a veth on the bridge, a namespace of no container) are
// removed at start-up, and a container that died meanwhile is released.
func TestNetworkSurvivesDaemonCrash(t *testing.T) {
	d := daemonWithBusybox(t)
	hostPort := freePortString(t)
	d.MustBerth(t, "network", "create", "crashnet")
	web := strings.TrimSpace(d.MustBerth(t, "run", "-d", "--name", "web", "--network", "crashnet", "-p", "127.0.0.1:"+hostPort+":80",
		"busybox", "sh", "-c", "while true; do echo up | nc -l -p 80; done"))
	victim := strings.TrimSpace(d.MustBerth(t, "run", "-d", "--network", "crashnet", "busybox", "sleep", "1000"))
	eventually(t, "the port to answer", func() bool { return dialRead("127.0.0.1:"+hostPort) == "up\n" })
	webIP := inspectField(t, d, web, "{{.NetworkSettings.Networks.crashnet.IPAddress}}")
	victimPid := inspectField(t, d, victim, "{{.State.Pid}}")
	netID := inspectField(t, d, "crashnet", "{{.Id}}")
	bridge := "br-" + netID[:12]
	oldProg := fastpathProg(t, "bv"+web[:9]+netID[:4])

	d.Kill9(t)
	// While the daemon is down: one container dies, and leftovers appear.
	if pid, err := strconvAtoi(victimPid); err == nil {
		_ = killPid(pid)
	}
	stale := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "bvdeadbeef0000"}, PeerName: "bvdeadbeef0001"}
	if err := netlink.LinkAdd(stale); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if l, err := netlink.LinkByName("bvdeadbeef0000"); err == nil {
			_ = netlink.LinkDel(l)
		}
	}()
	br, _ := netlink.LinkByName(bridge)
	if err := netlink.LinkSetMaster(stale, br); err != nil {
		t.Fatal(err)
	}
	staleNS := filepath.Join(d.ExecRoot, "netns", strings.Repeat("f", 64))
	if err := os.WriteFile(staleNS, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if dialRead("127.0.0.1:"+hostPort) != "up\n" {
		t.Error("the published port stopped answering when the daemon died")
	}
	d.Start(t)

	eventually(t, "the dead container to be recorded", func() bool {
		return inspectField(t, d, victim, "{{.State.Status}}") == "exited"
	})
	if linkExists("bvdeadbeef0000") {
		t.Error("a stale veth on the bridge survived start-up")
	}
	if _, err := os.Stat(staleNS); !os.IsNotExist(err) {
		t.Errorf("a stale namespace file survived start-up: %v", err)
	}
	eventually(t, "the dead container's veth to go", func() bool { return len(bridgePorts(t, bridge)) == 1 })
	if dialRead("127.0.0.1:"+hostPort) != "up\n" {
		t.Error("the published port does not answer after the restart")
	}
	if got := d.MustBerth(t, "run", "--rm", "--network", "crashnet", "busybox", "nc", "web", "80"); got != "up\n" {
		t.Errorf("name resolution after the restart: %q", got)
	}
	other := strings.TrimSpace(d.MustBerth(t, "run", "-d", "--network", "crashnet", "busybox", "sleep", "100"))
	if ip := inspectField(t, d, other, "{{.NetworkSettings.Networks.crashnet.IPAddress}}"); ip == webIP {
		t.Errorf("a new container got the running one's address %s", ip)
	}
	// The restored container's veth got the new daemon's fast-path
	// program (the one whose map it keeps up to date), as new ones do.
	webProg, otherProg := fastpathProg(t, "bv"+web[:9]+netID[:4]), fastpathProg(t, "bv"+other[:9]+netID[:4])
	if webProg == 0 || webProg == oldProg || webProg != otherProg {
		t.Errorf("fast-path programs: web's %d (before the crash %d), a new container's %d", webProg, oldProg, otherProg)
	}
	if r := d.Berth(t, "run", "-d", "-p", "127.0.0.1:"+hostPort+":80", "busybox", "true"); r.ExitCode == 0 {
		t.Errorf("the restored port was allocated again: %s", r)
	}
	d.MustBerth(t, "rm", "-f", web, other, victim)
	d.MustBerth(t, "network", "rm", "crashnet")
	if linkExists(bridge) {
		t.Error("bridge left")
	}
}

func strconvAtoi(s string) (int, error) { return strconv.Atoi(strings.TrimSpace(s)) }

// --network container:ID shares another container's stack; host and none;
// --mac-address; IPv6 on a user-defined network.
func TestNetworkModesMACAndIPv6(t *testing.T) {
	d := daemonWithBusybox(t)
	for _, cli := range []string{"berth", "docker"} {
		t.Run(cli, func(t *testing.T) {
			if cli == "docker" {
				testutil.RequiresDockerCLI(t)
			}
			res := func(args ...string) testutil.Result {
				if cli == "docker" {
					return d.Docker(t, args...)
				}
				return d.Berth(t, args...)
			}
			run := func(args ...string) string {
				r := res(args...)
				if r.ExitCode != 0 {
					t.Fatalf("%s %v: %s", cli, args, r)
				}
				return r.Stdout
			}
			srv := strings.TrimSpace(run("run", "-d", "--mac-address", "02:00:00:aa:bb:cc", "busybox", "sh", "-c", "while true; do echo shared | nc -l -p 90; done"))
			defer d.Berth(t, "rm", "-f", srv)
			if mac := run("exec", srv, "cat", "/sys/class/net/eth0/address"); mac != "02:00:00:aa:bb:cc\n" {
				t.Errorf("--mac-address: %q", mac)
			}
			eventually(t, "the server", func() bool { return strings.Contains(run("exec", srv, "netstat", "-ltn"), ":90") })
			if got := run("run", "--rm", "--network", "container:"+srv, "busybox", "nc", "127.0.0.1", "90"); got != "shared\n" {
				t.Errorf("container: mode sees the other's loopback: %q", got)
			}
			// ...and, as docker, its hostname, /etc/hosts and /etc/resolv.conf.
			peer := run("exec", srv, "sh", "-c", "hostname; cat /etc/hosts /etc/resolv.conf")
			if got := run("run", "--rm", "--network", "container:"+srv, "busybox", "sh", "-c", "hostname; cat /etc/hosts /etc/resolv.conf"); got != peer {
				t.Errorf("container: mode's hostname and /etc files:\n%s\nthe peer's:\n%s", got, peer)
			}
			if r := res("run", "--rm", "--network", "container:nosuch", "busybox", "true"); r.ExitCode == 0 {
				t.Errorf("container:nosuch: %s", r)
			}
			if r := res("run", "--rm", "--network", "container:"+srv, "-p", "99:99", "busybox", "true"); r.ExitCode == 0 {
				t.Errorf("-p with container: mode: %s", r)
			}
			if got := run("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net"); strings.TrimSpace(got) != "lo" {
				t.Errorf("none: %q", got)
			}
			// Other work on the host adds and removes interfaces (other
			// engines' veths): compare only a run around which the host's
			// list stayed the same.
			hostIfs := func() string {
				ifs, _ := net.Interfaces()
				var names []string
				for _, i := range ifs {
					names = append(names, i.Name)
				}
				slices.Sort(names)
				return strings.Join(names, " ")
			}
			for try := 1; ; try++ {
				before := hostIfs()
				got := run("run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net")
				if after := hostIfs(); after != before {
					if try < 20 {
						continue
					}
					t.Fatalf("the host's interfaces changed during each of %d runs", try)
				}
				if names := strings.Fields(got); strings.Join(slices.Sorted(slices.Values(names)), " ") != before {
					t.Errorf("host: %q, want the host's %q", got, before)
				}
				break
			}
			// IPv6 on a user-defined network.
			v6 := "v6-" + cli
			run("network", "create", "--ipv6", "--subnet", "fd00:b:"+map[string]string{"berth": "1", "docker": "2"}[cli]+"::/64", v6)
			defer d.Berth(t, "network", "rm", v6)
			a := strings.TrimSpace(run("run", "-d", "--name", "six-"+cli, "--network", v6, "busybox", "sh", "-c", "while true; do echo six | nc -l -p 91; done"))
			defer d.Berth(t, "rm", "-f", a)
			ip6 := inspectField(t, d, a, "{{(index .NetworkSettings.Networks \""+v6+"\").GlobalIPv6Address}}")
			if !strings.HasPrefix(ip6, "fd00:b:") {
				t.Fatalf("IPv6 address %q", ip6)
			}
			eventually(t, "the v6 server", func() bool { return strings.Contains(run("exec", a, "netstat", "-ltn"), ":91") })
			if got := run("run", "--rm", "--network", v6, "busybox", "nc", ip6, "91"); got != "six\n" {
				t.Errorf("container to container over IPv6: %q", got)
			}
		})
	}
}

// A published port answers another host: a peer namespace linked to the
// host by a veth reaches the host's address on that link, and the
// DNAT in prerouting forwards it to the container. Bad input gets
// docker's errors with nothing left behind.
func TestNetworkPublishedFromOtherHostAndBadInput(t *testing.T) {
	d := daemonWithBusybox(t)
	testutil.RequiresDockerCLI(t)
	// The peer "host".
	sfx := fmt.Sprintf("%05d", os.Getpid()%100000)
	peerNS := filepath.Join(d.Root, "peerns")
	if err := os.WriteFile(peerNS, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	peerErr := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			peerErr <- err
			return
		}
		peerErr <- unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), peerNS, "none", unix.MS_BIND, "")
	}()
	if err := <-peerErr; err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(peerNS, unix.MNT_DETACH)
	nsH, err := netns.GetFromPath(peerNS)
	if err != nil {
		t.Fatal(err)
	}
	defer nsH.Close()
	hostSide, peerSide := "bph"+sfx, "bpp"+sfx
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostSide}, PeerName: peerSide, PeerNamespace: netlink.NsFd(int(nsH))}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if l, err := netlink.LinkByName(hostSide); err == nil {
			_ = netlink.LinkDel(l)
		}
	}()
	third := 1 + os.Getpid()%250
	hostIP, peerIP := fmt.Sprintf("10.253.%d.1", third), fmt.Sprintf("10.253.%d.2", third)
	hl, _ := netlink.LinkByName(hostSide)
	a, _ := netlink.ParseAddr(hostIP + "/30")
	if err := netlink.AddrAdd(hl, a); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(hl); err != nil {
		t.Fatal(err)
	}
	ph, err := netlink.NewHandleAt(nsH)
	if err != nil {
		t.Fatal(err)
	}
	defer ph.Close()
	pl, err := ph.LinkByName(peerSide)
	if err != nil {
		t.Fatal(err)
	}
	pa, _ := netlink.ParseAddr(peerIP + "/30")
	if err := ph.AddrAdd(pl, pa); err != nil {
		t.Fatal(err)
	}
	if err := ph.LinkSetUp(pl); err != nil {
		t.Fatal(err)
	}

	port := freePortString(t)
	web := strings.TrimSpace(d.MustDocker(t, "run", "-d", "-p", port+":80", "busybox", "sh", "-c", "while true; do echo remote | nc -l -p 80; done"))
	defer d.Berth(t, "rm", "-f", web)
	fromPeer := func() string {
		ch := make(chan string, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
			if err := netns.Set(nsH); err != nil {
				ch <- ""
				return
			}
			ch <- dialRead(net.JoinHostPort(hostIP, port))
		}()
		return <-ch
	}
	eventually(t, "the published port to answer the peer host", func() bool { return fromPeer() == "remote\n" })

	// Bad input.
	for _, args := range [][]string{
		{"run", "--rm", "--network", "nosuchnet", "busybox", "true"},
		{"run", "--rm", "-p", "99999:80", "busybox", "true"},
		{"run", "--rm", "-p", "80:80/nope", "busybox", "true"},
		{"run", "--rm", "--ip", "10.9.9.9", "busybox", "true"},
		{"run", "--rm", "-p", port + ":80", "busybox", "true"},
	} {
		for _, r := range []testutil.Result{d.Berth(t, args...), d.Docker(t, args...)} {
			if r.ExitCode == 0 || strings.TrimSpace(r.Stderr) == "" {
				t.Errorf("%v: %s", args, r)
			}
		}
	}
	if r := d.Docker(t, "run", "--rm", "--network", "nosuchnet", "busybox", "true"); !strings.Contains(r.Stderr, "network nosuchnet not found") {
		t.Errorf("unknown network: %s", r)
	}
	if ids := strings.TrimSpace(d.MustBerth(t, "ps", "-q")); ids != web[:12] {
		t.Errorf("containers running after the bad runs: %q", ids)
	}
	eventually(t, "only the web container's veth on the bridge", func() bool { return len(bridgePorts(t, d.Bridge)) == 1 })
	if f := netnsFiles(d); len(f) != 1 {
		t.Errorf("namespaces: %v", f)
	}
}

// Several --network flags at create (API ≥ 1.44): the first is the
// primary (eth0, default route), the others are attached too.
func TestNetworkSeveralAtCreate(t *testing.T) {
	d := daemonWithBusybox(t)
	for _, cli := range []string{"berth", "docker"} {
		t.Run(cli, func(t *testing.T) {
			if cli == "docker" {
				testutil.RequiresDockerCLI(t)
			}
			run := func(args ...string) string {
				if cli == "docker" {
					return d.MustDocker(t, args...)
				}
				return d.MustBerth(t, args...)
			}
			a, b := "multi-a-"+cli, "multi-b-"+cli
			run("network", "create", a)
			defer d.Berth(t, "network", "rm", a)
			run("network", "create", b)
			defer d.Berth(t, "network", "rm", b)
			id := strings.TrimSpace(run("run", "-d", "--network", b, "--network", a, "busybox", "sleep", "100"))
			defer d.Berth(t, "rm", "-f", id)
			if n := inspectField(t, d, id, "{{len .NetworkSettings.Networks}}"); n != "2" {
				t.Fatalf("%s networks", n)
			}
			gwB := inspectField(t, d, b, "{{range .IPAM.Config}}{{.Gateway}}{{end}}")
			if route := run("exec", id, "ip", "route"); !strings.Contains(route, "default via "+gwB+" dev eth0") {
				t.Errorf("the first --network is not the primary:\n%s", route)
			}
			if links := run("exec", id, "ls", "/sys/class/net"); !strings.Contains(links, "eth1") {
				t.Errorf("second network's interface missing: %q", links)
			}
		})
	}
}
