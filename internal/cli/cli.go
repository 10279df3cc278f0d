// Package cli is berth's command-line client: docker's commands, flags,
// output formats and exit codes, talking to a berth (or any Docker
// Engine API) daemon only through the official Go client.
//
// cmd/berth calls Main; other roles of the binary (the daemon, hidden
// helpers) join the command tree through Main's or NewRootCommand's extra
// commands.
package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/berth-engine/berth/internal/cli/opts"
	"github.com/berth-engine/berth/internal/version"
	"github.com/docker/go-connections/tlsconfig"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Options wires a CLI run to its environment. Zero fields mean the
// process's own (os.Stdin, os.Stdout, os.Stderr, os.Getenv).
type Options struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
	// LookupEnv reads the environment (BERTH_HOST, DOCKER_HOST, -e KEY…).
	LookupEnv func(string) (string, bool)
	// Extra commands join the root command (e.g. `berth daemon`).
	Extra []*cobra.Command
}

// Main runs the CLI with the process's arguments (without argv[0]) and
// streams, and returns the exit code. SIGINT/SIGTERM cancel the command
// (exit 128+signal), except where a command forwards them to a container.
func Main(args []string, extra ...*cobra.Command) int {
	ctx, stop := signalContext(context.Background())
	defer stop()
	return Run(ctx, args, Options{Extra: extra})
}

// Run executes one CLI invocation and returns its exit code. It prints
// errors to opts.Err the way docker does.
func Run(ctx context.Context, args []string, o Options) int {
	c := newCLI(o)
	defer c.close()
	c.target = commandTarget(args)
	root := c.newRootCommand(o.Extra...)
	if args == nil {
		args = []string{} // cobra would read os.Args for nil
	}
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var sig signalError
	if errors.As(context.Cause(ctx), &sig) && (errors.Is(err, context.Canceled) || errors.As(err, &sig)) {
		return 128 + int(sig.sig)
	}
	if client.IsErrConnectionFailed(err) {
		var se StatusError
		code := exitCode(err)
		if !errors.As(err, &se) || se.Status == "" {
			err = wrapConnError(c.hostOrDefault(), err)
		}
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(c.err, msg)
		}
		return code
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(c.err, msg)
	}
	return exitCode(err)
}

// NewRootCommand returns the `berth` command tree bound to the process's
// streams and environment, with extra commands added (for example the
// daemon, or hidden helper commands). Run it with ExecuteContext; Main
// adds docker's error printing and exit codes on top.
func NewRootCommand(extra ...*cobra.Command) *cobra.Command {
	return newCLI(Options{}).newRootCommand(extra...)
}

type signalError struct{ sig syscall.Signal }

func (e signalError) Error() string { return "" }

// signalContext is canceled, with a signalError cause, by SIGINT/SIGTERM.
func signalContext(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case s := <-ch:
			if ss, ok := s.(syscall.Signal); ok {
				cancel(signalError{sig: ss})
			} else {
				cancel(nil)
			}
		case <-ctx.Done():
		}
		signal.Stop(ch)
	}()
	return ctx, func() { signal.Stop(ch); cancel(nil) }
}

// globalOptions are the flags of the root command.
type globalOptions struct {
	hosts     []string
	debug     bool
	logLevel  string
	config    string
	tls       bool
	tlsVerify bool
	tlsCACert string
	tlsCert   string
	tlsKey    string
}

// berthCLI is the state shared by all commands of one invocation.
type berthCLI struct {
	in        *inStream
	out       *outStream
	err       io.Writer
	lookupEnv func(string) (string, bool)
	now       func() time.Time

	opts   globalOptions
	host   string
	client *client.Client
	extra  map[*cobra.Command]bool
	// target is the command this invocation runs, when commandTarget
	// could tell ("" = unknown: the whole tree is built).
	target string
}

func newCLI(o Options) *berthCLI {
	if o.In == nil {
		o.In = os.Stdin
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Err == nil {
		o.Err = os.Stderr
	}
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	return &berthCLI{
		in:        newInStream(o.In),
		out:       newOutStream(o.Out),
		err:       o.Err,
		lookupEnv: o.LookupEnv,
		now:       time.Now,
	}
}

func (c *berthCLI) getenv(k string) string {
	if v, ok := c.lookupEnv(k); ok {
		return v
	}
	return ""
}

// resolveHost picks the daemon address: -H, then BERTH_HOST, then
// DOCKER_HOST, then the default socket.
func resolveHost(flagHosts []string, getenv func(string) string, tls bool) (string, error) {
	var h string
	switch {
	case len(flagHosts) > 1:
		return "", errors.New("specify only one -H")
	case len(flagHosts) == 1:
		h = flagHosts[0]
	case getenv("BERTH_HOST") != "":
		h = getenv("BERTH_HOST")
	case getenv("DOCKER_HOST") != "":
		h = getenv("DOCKER_HOST")
	}
	return opts.ParseHost(h, tls)
}

func (c *berthCLI) hostOrDefault() string {
	if c.host != "" {
		return c.host
	}
	h, err := resolveHost(c.opts.hosts, c.getenv, c.tlsEnabled())
	if err != nil {
		return opts.DefaultHost
	}
	return h
}

func (c *berthCLI) tlsEnabled() bool {
	return c.opts.tls || c.opts.tlsVerify || c.getenv("DOCKER_TLS_VERIFY") != ""
}

// Client returns the Engine API client, created on first use so that
// commands which never talk to the daemon (help, flag errors) do not need
// one. API version negotiation is on unless DOCKER_API_VERSION pins it.
func (c *berthCLI) Client() (*client.Client, error) {
	if c.client != nil {
		return c.client, nil
	}
	host, err := resolveHost(c.opts.hosts, c.getenv, c.tlsEnabled())
	if err != nil {
		return nil, err
	}
	c.host = host
	var ops []client.Opt
	if c.tlsEnabled() && strings.HasPrefix(host, "tcp://") {
		cfg, err := c.tlsClientConfig()
		if err != nil {
			return nil, err
		}
		// The transport must carry the TLS settings before WithHost
		// configures its dialer.
		ops = append(ops, client.WithHTTPClient(&http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}), client.WithScheme("https"))
	}
	ops = append(ops, client.WithHost(host), client.WithUserAgent("berth-cli/"+version.Version))
	if v := c.getenv("DOCKER_API_VERSION"); v != "" {
		ops = append(ops, client.WithAPIVersion(v))
	}
	cl, err := client.New(ops...)
	if err != nil {
		return nil, fmt.Errorf("create API client for %s: %w", host, err)
	}
	c.client = cl
	return cl, nil
}

// tlsClientConfig is docker's client TLS: files from --tlscacert,
// --tlscert, --tlskey, else $DOCKER_CERT_PATH (or ~/.docker)/{ca,cert,key}.pem.
// --tlsverify (or DOCKER_TLS_VERIFY) checks the daemon's certificate
// against the CA; plain --tls does not, and sends a client certificate
// only if one is there (docker's SetDefaultOptions).
func (c *berthCLI) tlsClientConfig() (*tls.Config, error) {
	dir := c.getenv("DOCKER_CERT_PATH")
	if dir == "" {
		dir = defaultCertDir()
	}
	pick := func(flag, name string, always bool) string {
		if flag != "" {
			return flag
		}
		if p := filepath.Join(dir, name); always || fileExists(p) {
			return p
		}
		return ""
	}
	o := tlsconfig.Options{
		CAFile:             pick(c.opts.tlsCACert, "ca.pem", c.opts.tlsVerify),
		CertFile:           pick(c.opts.tlsCert, "cert.pem", false),
		KeyFile:            pick(c.opts.tlsKey, "key.pem", false),
		ExclusiveRootPools: true,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: !c.opts.tlsVerify,
	}
	if o.CertFile == "" || o.KeyFile == "" {
		o.CertFile, o.KeyFile = "", ""
	}
	cfg, err := tlsconfig.Client(o)
	if err != nil {
		return nil, fmt.Errorf("could not load TLS configuration: %w", err)
	}
	return cfg, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func defaultCertDir() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ".docker"
	}
	return filepath.Join(home, ".docker")
}

func (c *berthCLI) close() {
	if c.client != nil {
		_ = c.client.Close()
	}
}

func (c *berthCLI) newRootCommand(extra ...*cobra.Command) *cobra.Command {
	setupTemplateFuncs()
	root := &cobra.Command{
		Use:              "berth [OPTIONS] COMMAND [ARG...]",
		Short:            "A Docker-compatible container engine",
		SilenceUsage:     true,
		SilenceErrors:    true,
		TraverseChildren: true,
		Args:             cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				cmd.SetOut(c.err)
				return cmd.Help()
			}
			return fmt.Errorf("berth: unknown command: berth %s\n\nRun 'berth --help' for more information", args[0])
		},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			for p := cmd; p != nil; p = p.Parent() {
				if c.extra[p] {
					// Extra commands (the daemon…) own their logging.
					return nil
				}
			}
			return c.applyGlobalOptions()
		},
		Version:           versionString(),
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: true},
	}
	root.SetIn(c.in)
	root.SetOut(c.out)
	root.SetErr(c.err)
	root.SetVersionTemplate("berth version {{.Version}}\n")
	root.SetUsageTemplate(usageTemplate)
	root.SetHelpTemplate(helpTemplate)
	root.SetFlagErrorFunc(flagErrorFunc)
	root.SetHelpCommand(newHelpCommand())
	root.Annotations = map[string]string{"additionalHelp": "berth is a Docker-compatible engine: the docker CLI works against it too."}

	f := root.Flags()
	f.StringArrayVarP(&c.opts.hosts, "host", "H", nil, "Daemon socket to connect to")
	f.BoolVarP(&c.opts.debug, "debug", "D", false, "Enable debug mode")
	f.StringVarP(&c.opts.logLevel, "log-level", "l", "info", `Set the logging level ("debug", "info", "warn", "error", "fatal")`)
	f.StringVar(&c.opts.config, "config", defaultConfigDir(c.getenv), "Location of client config files")
	f.BoolVar(&c.opts.tls, "tls", false, "Use TLS; implied by --tlsverify")
	f.BoolVar(&c.opts.tlsVerify, "tlsverify", c.getenv("DOCKER_TLS_VERIFY") != "", "Use TLS and verify the remote")
	f.StringVar(&c.opts.tlsCACert, "tlscacert", "", "Trust certs signed only by this CA")
	f.StringVar(&c.opts.tlsCert, "tlscert", "", "Path to TLS certificate file")
	f.StringVar(&c.opts.tlsKey, "tlskey", "", "Path to TLS key file")
	f.BoolP("version", "v", false, "Print version information and quit")
	hostFlag := f.Lookup("host")
	hostFlag.Value = &hostListValue{values: &c.opts.hosts}

	root.PersistentFlags().BoolP("help", "h", false, "Print usage")
	_ = root.PersistentFlags().MarkShorthandDeprecated("help", "use --help")
	root.PersistentFlags().Lookup("help").Hidden = true

	c.addCommands(root)
	c.extra = map[*cobra.Command]bool{}
	for _, e := range extra {
		if e != nil {
			c.extra[e] = true
			root.AddCommand(e)
		}
	}
	disableFlagsInUseLine(root)
	return root
}

// hostListValue shows -H as docker's "list" in help.
type hostListValue struct{ values *[]string }

func (v *hostListValue) String() string { return "" }
func (v *hostListValue) Set(s string) error {
	*v.values = append(*v.values, s)
	return nil
}
func (v *hostListValue) Type() string { return "list" }

var _ pflag.Value = (*hostListValue)(nil)

func defaultConfigDir(getenv func(string) string) string {
	if d := getenv("DOCKER_CONFIG"); d != "" {
		return d
	}
	return defaultCertDir()
}

func versionString() string {
	if version.GitCommit != "" {
		return version.Version + ", build " + version.GitCommit
	}
	return version.Version
}

// applyGlobalOptions validates the root flags and sets up logging.
func (c *berthCLI) applyGlobalOptions() error {
	level := slog.LevelInfo
	switch strings.ToLower(c.opts.logLevel) {
	case "debug":
		level = slog.LevelDebug
	case "info", "":
	case "warn", "warning":
		level = slog.LevelWarn
	case "error", "fatal", "panic":
		level = slog.LevelError
	default:
		return fmt.Errorf("unable to parse logging level: %s", c.opts.logLevel)
	}
	if c.opts.debug {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(c.err, &slog.HandlerOptions{Level: level})))
	if len(c.opts.hosts) > 1 {
		return errors.New("specify only one -H")
	}
	return nil
}

// commandTarget returns the name of the top-level command args run: their
// first word that is neither a root flag nor a root flag's value. It
// returns "" when unsure (an unknown flag, --help, --version, no command).
func commandTarget(args []string) string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return ""
		case a == "-" || !strings.HasPrefix(a, "-"):
			return a
		case strings.HasPrefix(a, "--"):
			name, _, inline := strings.Cut(a[2:], "=")
			switch name {
			case "host", "log-level", "config", "tlscacert", "tlscert", "tlskey":
				if !inline {
					i++ // the value
				}
			case "debug", "tls", "tlsverify":
			default:
				return ""
			}
		default: // short flags, perhaps grouped: -D, -H VALUE, -HVALUE, -Dl debug
			s := a[1:]
		short:
			for j := 0; j < len(s); j++ {
				switch s[j] {
				case 'D':
				case 'H', 'l':
					if j == len(s)-1 {
						i++ // the value is the next argument
					}
					break short
				default:
					return ""
				}
			}
		}
	}
	return ""
}

// needsContainerFlags tells whether the command tree needs run and create
// (name "run" or "create" at the top, "container" for the group's): their
// ~100 flags each are most of the tree's cost (~1.6 ms in all here), which
// every CLI start pays, so they are left out when another command runs.
// Help, completion and an unknown target get everything.
func (c *berthCLI) needsContainerFlags(name string) bool {
	switch c.target {
	case "", "help", "completion", "__complete", "__completeNoDesc", name:
		return true
	}
	return false
}

func (c *berthCLI) addCommands(root *cobra.Command) {
	// Top-level commands, as docker has them.
	if c.needsContainerFlags("run") {
		root.AddCommand(c.newRunCommand())
	}
	if c.needsContainerFlags("create") {
		root.AddCommand(c.newCreateCommand())
	}
	root.AddCommand(
		c.newPsCommand(),
		c.newPullCommand(),
		c.newPushCommand(),
		c.newImagesCommand(),
		c.newLoginCommand(),
		c.newLogoutCommand(),
		c.newVersionCommand(),
		c.newInfoCommand(),

		c.newStartCommand(),
		c.newStopCommand(),
		c.newKillCommand(),
		c.newRmCommand(),
		c.newRestartCommand(),
		c.newWaitCommand(),
		c.newRenameCommand(),
		c.newLogsCommand(),
		c.newInspectCommand(),

		c.newTagCommand(),
		c.newRmiCommand(),
		c.newHistoryCommand(),
		c.newImportCommand(),
		c.newLoadCommand(),
		c.newSaveCommand(),
	)

	container := newManagementCommand("container", "Manage containers")
	ls := c.newPsCommand()
	ls.Use, ls.Aliases = "ls [OPTIONS]", []string{"list", "ps"}
	delete(ls.Annotations, "category-top")
	rm := c.newRmCommand()
	rm.Aliases = []string{"remove"}
	if c.needsContainerFlags("container") {
		container.AddCommand(c.newRunCommand(), c.newCreateCommand())
	}
	container.AddCommand(ls, c.newStartCommand(), c.newStopCommand(),
		c.newKillCommand(), rm, c.newRestartCommand(), c.newWaitCommand(), c.newContainerInspectCommand(),
		c.newRenameCommand(), c.newLogsCommand(), c.newContainerPruneCommand())
	for _, sub := range container.Commands() {
		delete(sub.Annotations, "category-top")
	}

	img := newManagementCommand("image", "Manage images")
	ils := c.newImagesCommand()
	ils.Use, ils.Aliases = "ls [OPTIONS] [REPOSITORY[:TAG]]", []string{"images", "list"}
	irm := c.newRmiCommand()
	irm.Use, irm.Aliases = "rm [OPTIONS] IMAGE [IMAGE...]", []string{"rmi", "remove"}
	img.AddCommand(ils, c.newImageInspectCommand(), c.newTagCommand(), irm, c.newHistoryCommand(),
		c.newImportCommand(), c.newLoadCommand(), c.newSaveCommand(), c.newImagePruneCommand(), c.newPullCommand(), c.newPushCommand())
	for _, sub := range img.Commands() {
		delete(sub.Annotations, "category-top")
	}

	sys := newManagementCommand("system", "Manage berth")
	sys.AddCommand(c.newInfoCommand())
	for _, sub := range sys.Commands() {
		delete(sub.Annotations, "category-top")
	}

	c.addOperateCommands(root, container, sys)
	c.addVolumeCommands(root)
	c.addNetworkCommands(root)
	c.addCopyCommands(root, container)
	c.addDiskUsageCommands(sys)
	c.addBuildCommands(root, img, container)
	root.AddCommand(container, img, sys)
}

// newManagementCommand is a command group ("berth container …"): it shows
// its help when called alone and names an unknown subcommand otherwise.
func newManagementCommand(name, short string) *cobra.Command {
	return &cobra.Command{
		Use:   name,
		Short: short,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			return cmd.Help()
		},
	}
}

func disableFlagsInUseLine(cmd *cobra.Command) {
	cmd.DisableFlagsInUseLine = true
	for _, sub := range cmd.Commands() {
		disableFlagsInUseLine(sub)
	}
}

func newHelpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about the command",
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if cmd == nil || err != nil || len(rest) > 0 {
				return fmt.Errorf("unknown help topic: %v", strings.Join(args, " "))
			}
			return cmd.Help()
		},
	}
}
