package daemon

import (
	"github.com/berth-engine/berth/internal/distribution"
	"github.com/spf13/cobra"
)

// NewCommand returns the `berth daemon` command.
func NewCommand() *cobra.Command {
	opts := Options{}
	cmd := &cobra.Command{
		Use:   "daemon [OPTIONS]",
		Short: "Run the berth daemon (the Docker Engine API server)",
		Long: "Run the berth daemon: it serves the Docker Engine API on a unix socket (and optionally TCP),\n" +
			"owns images and containers, and leaves containers running when it stops.",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: false,
		RunE: func(cmd *cobra.Command, args []string) error {
			return Run(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.DataRoot, "data-root", "/var/lib/berth", "Root directory of persistent berth state")
	f.StringVar(&opts.ExecRoot, "exec-root", "/run/berth", "Root directory for execution state files")
	f.StringArrayVarP(&opts.Hosts, "host", "H", nil, "Daemon socket(s) to listen on (unix:///path or tcp://host:port)")
	f.StringVarP(&opts.LogLevel, "log-level", "l", "info", `Set the logging level ("debug"|"info"|"warn"|"error")`)
	f.StringVarP(&opts.StorageDriver, "storage-driver", "s", "", `Storage driver to use ("overlay2"|"vfs"; default: overlay2 where overlayfs works)`)
	f.StringArrayVar(&opts.AddRuntimes, "add-runtime", nil, "Register an additional OCI runtime (NAME=PATH)")
	f.StringVar(&opts.DefaultRuntime, "default-runtime", "", `Default OCI runtime for containers (default "berth")`)
	f.StringVar(&opts.CgroupParent, "cgroup-parent", "/berth", "Parent cgroup for all containers")
	f.StringArrayVar(&opts.InsecureRegistries, "insecure-registry", nil, "Enable insecure registry communication (host[:port] or CIDR)")
	f.StringVar(&opts.CertsDir, "registry-certs-dir", distribution.DefaultCertsDir, "Directory of per-registry CAs and client certificates (docker's certs.d layout: DIR/HOST[:PORT]/ca.crt)")
	f.StringVarP(&opts.Access.Group, "group", "G", DefaultGroup, `Group for the unix socket (created if missing; "" leaves it root:root)`)
	f.BoolVar(&opts.Access.TLS, "tls", false, "Use TLS on TCP listeners; implied by --tlsverify")
	f.BoolVar(&opts.Access.TLSVerify, "tlsverify", false, "Use TLS and require clients to present a certificate signed by --tlscacert")
	f.StringVar(&opts.Access.TLSCACert, "tlscacert", "", "Trust client certificates signed only by this CA (default $DOCKER_CERT_PATH/ca.pem or ~/.docker/ca.pem)")
	f.StringVar(&opts.Access.TLSCert, "tlscert", "", "Path to the server's TLS certificate (default $DOCKER_CERT_PATH/cert.pem or ~/.docker/cert.pem)")
	f.StringVar(&opts.Access.TLSKey, "tlskey", "", "Path to the server's TLS key (default $DOCKER_CERT_PATH/key.pem or ~/.docker/key.pem)")
	f.BoolVar(&opts.Access.AllowInsecureTCP, "allow-insecure-tcp", false, "Allow TCP listeners on non-loopback addresses without TLS client-certificate verification (gives root to anyone who can connect)")
	f.StringVar(&opts.UsernsRemap, "userns-remap", "", `User/Group setting for user namespaces ("default", USER[:GROUP] or UID[:GID]; default creates the user berthremap)`)
	cmd.PreRun = func(cmd *cobra.Command, args []string) {
		// dockerd 27+ accepts an unauthenticated TCP listener only when
		// TLS is explicitly switched off; berth takes that as the force too.
		if (f.Changed("tls") && !opts.Access.TLS) || (f.Changed("tlsverify") && !opts.Access.TLSVerify) {
			opts.Access.AllowInsecureTCP = true
		}
	}
	f.StringVarP(&opts.Bridge, "bridge", "b", "berth0", "Attach containers to a network bridge (the default bridge network's device)")
	f.StringVar(&opts.BIP, "bip", "", "Specify default-bridge IPv4 network (gateway address/prefix, e.g. 172.18.0.1/16)")
	f.StringArrayVar(&opts.AddressPools, "default-address-pool", nil, "Default address pools for node specific local networks (base=CIDR,size=N)")
	f.StringVar(&opts.NFTablesTable, "nftables-table", "berth", "Name of berth's own nftables table (tests run daemons side by side with unique names)")
	return cmd
}
