package registry

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

func listen(addr string) (net.Listener, error) {
	return net.Listen("tcp", addr)
}

// NewCommand returns `berth registry`: `serve` runs the built-in registry,
// `gc` collects a stopped registry's storage.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Run berth's built-in OCI registry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(newServeCommand(), newGCCommand(), newHtpasswdCommand())
	return cmd
}

type serveOptions struct {
	addr, root, htpasswd, cert, key string
	gcInterval, gcGrace             time.Duration
	logLevel                        string
}

func newServeCommand() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve [OPTIONS]",
		Short: "Serve the OCI distribution API from a directory",
		Long: "Serve the OCI distribution API (v1.1) from a directory that survives restarts.\n" +
			"Push to it and pull from it with berth, docker or any OCI client:\n\n" +
			"  berth registry serve --addr 127.0.0.1:5000 --root /var/lib/berth-registry\n" +
			"  berth tag busybox 127.0.0.1:5000/busybox && berth push 127.0.0.1:5000/busybox",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: false,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runServe(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", "127.0.0.1:5000", "Address to listen on (host:port)")
	f.StringVar(&o.root, "root", "/var/lib/berth-registry", "Storage directory")
	f.StringVar(&o.htpasswd, "htpasswd", "", "Require basic auth against this htpasswd file (bcrypt entries)")
	f.StringVar(&o.cert, "tls-cert", "", "Serve TLS with this certificate (PEM)")
	f.StringVar(&o.key, "tls-key", "", "Private key of --tls-cert (PEM)")
	f.DurationVar(&o.gcInterval, "gc-interval", time.Hour, "Collect unreferenced blobs this often while serving (0: never)")
	f.DurationVar(&o.gcGrace, "gc-grace", time.Hour, "Keep unreferenced blobs at least this long (uploads waiting for their manifest)")
	f.StringVar(&o.logLevel, "log-level", "info", `Logging level ("debug"|"info"|"warn"|"error")`)
	return cmd
}

func logger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid log level %q", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func runServe(ctx context.Context, o serveOptions, out interface{ Write([]byte) (int, error) }) error {
	if (o.cert == "") != (o.key == "") {
		return fmt.Errorf("--tls-cert and --tls-key go together")
	}
	log, err := logger(o.logLevel)
	if err != nil {
		return err
	}
	r, err := New(Options{Root: o.root, Htpasswd: o.htpasswd, Logger: log})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go r.RunGC(ctx, o.gcInterval, o.gcGrace)
	return r.Serve(ctx, o.addr, o.cert, o.key, func(addr string) {
		scheme := "http"
		if o.cert != "" {
			scheme = "https"
		}
		log.Info("registry listening", "addr", addr, "url", scheme+"://"+addr+"/v2/", "root", o.root)
	})
}

func newGCCommand() *cobra.Command {
	var root string
	var grace time.Duration
	cmd := &cobra.Command{
		Use:          "gc [OPTIONS]",
		Short:        "Delete blobs no manifest references",
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := New(Options{Root: root})
			if err != nil {
				return err
			}
			rep, err := r.GC(cmd.Context(), grace, 0)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Deleted blobs: %d\nTotal reclaimed space: %d B\n", rep.BlobsDeleted, rep.BytesReclaimed)
			return nil
		},
	}
	cmd.Flags().StringVar(&root, "root", "/var/lib/berth-registry", "Storage directory")
	cmd.Flags().DurationVar(&grace, "grace", 0, "Keep unreferenced blobs younger than this")
	return cmd
}

func newHtpasswdCommand() *cobra.Command {
	return &cobra.Command{
		Use:          "htpasswd USER PASSWORD",
		Short:        "Print an htpasswd line (bcrypt) for --htpasswd",
		Args:         cobra.ExactArgs(2),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			line, err := HashPassword(args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), line)
			return nil
		},
	}
}
