package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	gosignal "os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/berth-engine/berth/internal/cli/formatter"
	"github.com/berth-engine/berth/internal/cli/opts"
	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
	"github.com/moby/term"
	"github.com/spf13/cobra"
)

// addOperateCommands adds the commands that operate running containers
// (exec, attach, pause, unpause, top, stats, update) and events, at the top
// level and under `container` (and `system events`).
func (c *berthCLI) addOperateCommands(root, ctr, sys *cobra.Command) {
	root.AddCommand(c.newExecCommand(), c.newAttachCommand(), c.newPauseCommand(), c.newUnpauseCommand(),
		c.newTopCommand(), c.newStatsCommand(), c.newUpdateCommand(), c.newEventsCommand(), c.newPortCommand())
	for _, sub := range []*cobra.Command{c.newExecCommand(), c.newAttachCommand(), c.newPauseCommand(), c.newUnpauseCommand(),
		c.newTopCommand(), c.newStatsCommand(), c.newUpdateCommand(), c.newPortCommand()} {
		delete(sub.Annotations, "category-top")
		ctr.AddCommand(sub)
	}
	ev := c.newEventsCommand()
	delete(ev.Annotations, "category-top")
	sys.AddCommand(ev)
}

type execOptions struct {
	detach      bool
	detachKeys  string
	env         opts.ListOpts
	envFile     opts.ListOpts
	interactive bool
	privileged  bool
	tty         bool
	user        string
	workdir     string
}

func (c *berthCLI) newExecCommand() *cobra.Command {
	o := execOptions{env: opts.NewListOpts(opts.NewEnvValidator(c.lookupEnv)), envFile: opts.NewListOpts(nil)}
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Execute a command in a running container",
		Args:  requiresMinArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runExec(cmd.Context(), &o, args[0], args[1:])
		},
		Annotations: map[string]string{"category-top": "2", "aliases": "berth container exec, berth exec"},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	f.BoolVarP(&o.detach, "detach", "d", false, "Detached mode: run command in the background")
	f.StringVar(&o.detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	f.VarP(&o.env, "env", "e", "Set environment variables")
	f.Var(&o.envFile, "env-file", "Read in a file of environment variables")
	f.BoolVarP(&o.interactive, "interactive", "i", false, "Keep STDIN open even if not attached")
	f.BoolVar(&o.privileged, "privileged", false, "Give extended privileges to the command")
	f.BoolVarP(&o.tty, "tty", "t", false, "Allocate a pseudo-TTY")
	f.StringVarP(&o.user, "user", "u", "", "Username or UID (format: \"<name|uid>[:<group|gid>]\")")
	f.StringVarP(&o.workdir, "workdir", "w", "", "Working directory inside the container")
	return cmd
}

func (c *berthCLI) runExec(ctx context.Context, o *execOptions, ctr string, command []string) error {
	env, err := opts.ReadKVEnvStrings(o.envFile.GetSlice(), o.env.GetSlice(), c.lookupEnv)
	if err != nil {
		return err
	}
	api, err := c.Client()
	if err != nil {
		return err
	}
	attachStdin := o.interactive && !o.detach
	if err := c.in.CheckTty(attachStdin, o.tty); err != nil {
		return err
	}
	detachKeys := o.detachKeys
	var size client.ConsoleSize
	if o.tty && c.out.IsTerminal() {
		h, w := c.out.GetTtySize()
		size = client.ConsoleSize{Height: h, Width: w}
	}
	created, err := api.ExecCreate(ctx, ctr, client.ExecCreateOptions{
		User:         o.user,
		Privileged:   o.privileged,
		TTY:          o.tty,
		ConsoleSize:  size,
		AttachStdin:  attachStdin,
		AttachStdout: !o.detach,
		AttachStderr: !o.detach,
		DetachKeys:   detachKeys,
		Env:          env,
		WorkingDir:   o.workdir,
		Cmd:          command,
	})
	if err != nil {
		return err
	}
	id := created.ID
	if o.detach {
		_, err := api.ExecStart(ctx, id, client.ExecStartOptions{Detach: true, TTY: o.tty, ConsoleSize: size})
		return err
	}
	resp, err := api.ExecAttach(ctx, id, client.ExecAttachOptions{TTY: o.tty, ConsoleSize: size})
	if err != nil {
		return err
	}
	defer resp.Close()
	var in io.ReadCloser
	if attachStdin {
		in = c.in
	}
	errw := c.err
	if o.tty {
		errw = c.out
	}
	streamCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	if o.tty && c.out.IsTerminal() {
		c.monitorResize(streamCtx, func(ctx context.Context, h, w uint) error {
			_, err := api.ExecResize(ctx, id, client.ExecResizeOptions{Height: h, Width: w})
			return err
		})
	}
	s := hijackedIOStreamer{in: c.in, out: c.out, inputStream: in, outputStream: c.out, errorStream: errw,
		resp: resp.HijackedResponse, tty: o.tty, detachKeys: detachKeys}
	if err := s.stream(streamCtx); err != nil {
		var esc term.EscapeError
		if errors.As(err, &esc) {
			return nil
		}
		return err
	}
	res, err := api.ExecInspect(context.WithoutCancel(ctx), id, client.ExecInspectOptions{})
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return StatusError{StatusCode: res.ExitCode}
	}
	return nil
}

// monitorResize keeps a TTY the size of the user's terminal until ctx ends:
// once now, then at each SIGWINCH.
func (c *berthCLI) monitorResize(ctx context.Context, resize func(ctx context.Context, h, w uint) error) {
	send := func() {
		h, w := c.out.GetTtySize()
		if h == 0 && w == 0 {
			return
		}
		if err := resize(ctx, h, w); err != nil {
			slog.Debug("resize", "error", err)
		}
	}
	sigchan := make(chan os.Signal, 1)
	gosignal.Notify(sigchan, syscall.SIGWINCH)
	go func() {
		defer gosignal.Stop(sigchan)
		send()
		for {
			select {
			case <-ctx.Done():
				return
			case <-sigchan:
				send()
			}
		}
	}()
}

type attachCmdOptions struct {
	noStdin    bool
	sigProxy   bool
	detachKeys string
}

func (c *berthCLI) newAttachCommand() *cobra.Command {
	var o attachCmdOptions
	cmd := &cobra.Command{
		Use:   "attach [OPTIONS] CONTAINER",
		Short: "Attach local standard input, output, and error streams to a running container",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runAttach(cmd.Context(), &o, args[0])
		},
		Annotations: map[string]string{"aliases": "berth container attach, berth attach"},
	}
	f := cmd.Flags()
	f.BoolVar(&o.noStdin, "no-stdin", false, "Do not attach STDIN")
	f.BoolVar(&o.sigProxy, "sig-proxy", true, "Proxy all received signals to the process")
	f.StringVar(&o.detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	return cmd
}

func (c *berthCLI) runAttach(ctx context.Context, o *attachCmdOptions, name string) error {
	api, err := c.Client()
	if err != nil {
		return err
	}
	insp, err := api.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if err != nil {
		return err
	}
	ctr := insp.Container
	st := ctr.State
	switch {
	case st == nil || !st.Running:
		//lint:ignore ST1005 docker's exact message
		return errors.New("You cannot attach to a stopped container, start it first")
	case st.Paused:
		//lint:ignore ST1005 docker's exact message
		return errors.New("You cannot attach to a paused container, unpause it first")
	case st.Restarting:
		//lint:ignore ST1005 docker's exact message
		return errors.New("You cannot attach to a restarting container, wait until it is running")
	}
	cfg := ctr.Config
	attachStdin := !o.noStdin && cfg.OpenStdin
	if err := c.in.CheckTty(attachStdin, cfg.Tty); err != nil {
		return err
	}
	// Wait is registered before attaching, so the exit is never missed.
	waitCtx, cancelWait := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWait()
	statusC := c.waitExitOrRemoved(waitCtx, api, ctr.ID, false)
	streamCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	errC, closeFn, err := c.attachContainer(streamCtx, ctr.ID, cfg, client.ContainerAttachOptions{
		Stream: true, Stdin: attachStdin, Stdout: true, Stderr: true, DetachKeys: o.detachKeys,
	})
	if err != nil {
		return err
	}
	defer closeFn()
	if cfg.Tty && c.out.IsTerminal() {
		c.monitorResize(streamCtx, func(ctx context.Context, h, w uint) error {
			_, err := api.ContainerResize(ctx, ctr.ID, client.ContainerResizeOptions{Height: h, Width: w})
			return err
		})
	}
	if o.sigProxy && !cfg.Tty {
		sigc := notifyAllSignals()
		sigc.wait()
		defer sigc.stop()
		go forwardAllSignals(streamCtx, api, ctr.ID, sigc)
	}
	select {
	case err := <-errC:
		if err != nil {
			var esc term.EscapeError
			if errors.As(err, &esc) {
				return nil // detached: the container keeps running
			}
			if !errors.Is(err, context.Canceled) {
				return err
			}
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	// The stream ended with the container's output: report its exit code.
	select {
	case status := <-statusC:
		if status != 0 {
			return StatusError{StatusCode: status}
		}
	case <-time.After(outputDrainTimeout):
	}
	return nil
}

func (c *berthCLI) newPauseCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "pause CONTAINER [CONTAINER...]",
		Short: "Pause all processes within one or more containers",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.Client()
			if err != nil {
				return err
			}
			errs := parallel(cmd.Context(), args, func(ctx context.Context, id string) error {
				_, err := api.ContainerPause(ctx, id, client.ContainerPauseOptions{})
				return err
			})
			return c.reportEach(args, errs)
		},
		Annotations: map[string]string{"aliases": "berth container pause, berth pause"},
	}
}

func (c *berthCLI) newUnpauseCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "unpause CONTAINER [CONTAINER...]",
		Short: "Unpause all processes within one or more containers",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.Client()
			if err != nil {
				return err
			}
			errs := parallel(cmd.Context(), args, func(ctx context.Context, id string) error {
				_, err := api.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{})
				return err
			})
			return c.reportEach(args, errs)
		},
		Annotations: map[string]string{"aliases": "berth container unpause, berth unpause"},
	}
}

func (c *berthCLI) newTopCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "top CONTAINER [ps OPTIONS]",
		Short: "Display the running processes of a container",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.Client()
			if err != nil {
				return err
			}
			res, err := api.ContainerTop(cmd.Context(), args[0], client.ContainerTopOptions{Arguments: args[1:]})
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(c.out, 20, 1, 3, ' ', 0)
			fmt.Fprintln(w, strings.Join(res.Titles, "\t"))
			for _, p := range res.Processes {
				fmt.Fprintln(w, strings.Join(p, "\t"))
			}
			return w.Flush()
		},
		Annotations: map[string]string{"aliases": "berth container top, berth top"},
	}
	cmd.Flags().SetInterspersed(false)
	return cmd
}

type updateOptions struct {
	blkioWeight                    uint16
	cpuPeriod, cpuQuota, cpuShares int64
	cpus                           opts.NanoCPUs
	cpusetCpus, cpusetMems         string
	memory, memoryReservation      opts.MemBytes
	memorySwap                     opts.MemSwapBytes
	pidsLimit                      int64
	restart                        string
}

func (c *berthCLI) newUpdateCommand() *cobra.Command {
	var o updateOptions
	cmd := &cobra.Command{
		Use:   "update [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Update configuration of one or more containers",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().NFlag() == 0 {
				return errors.New("you must provide one or more flags when using this command")
			}
			f := cmd.Flags()
			r := &container.Resources{
				BlkioWeight:       o.blkioWeight,
				CPUPeriod:         o.cpuPeriod,
				CPUQuota:          o.cpuQuota,
				CPUShares:         o.cpuShares,
				NanoCPUs:          o.cpus.Value(),
				CpusetCpus:        o.cpusetCpus,
				CpusetMems:        o.cpusetMems,
				Memory:            o.memory.Value(),
				MemoryReservation: o.memoryReservation.Value(),
				MemorySwap:        o.memorySwap.Value(),
			}
			if f.Changed("pids-limit") {
				l := o.pidsLimit
				r.PidsLimit = &l
			}
			var policy *container.RestartPolicy
			if f.Changed("restart") {
				p, err := opts.ParseRestartPolicy(o.restart)
				if err != nil {
					return err
				}
				policy = &p
			}
			api, err := c.Client()
			if err != nil {
				return err
			}
			var warnings []string
			errs := parallel(cmd.Context(), args, func(ctx context.Context, id string) error {
				res, err := api.ContainerUpdate(ctx, id, client.ContainerUpdateOptions{Resources: r, RestartPolicy: policy})
				warnings = append(warnings, res.Warnings...)
				return err
			})
			for _, w := range warnings {
				fmt.Fprintln(c.err, w)
			}
			return c.reportEach(args, errs)
		},
		Annotations: map[string]string{"aliases": "berth container update, berth update"},
	}
	f := cmd.Flags()
	f.Uint16Var(&o.blkioWeight, "blkio-weight", 0, "Block IO (relative weight), between 10 and 1000, or 0 to disable (default 0)")
	f.Int64Var(&o.cpuPeriod, "cpu-period", 0, "Limit CPU CFS (Completely Fair Scheduler) period")
	f.Int64Var(&o.cpuQuota, "cpu-quota", 0, "Limit CPU CFS (Completely Fair Scheduler) quota")
	f.Int64VarP(&o.cpuShares, "cpu-shares", "c", 0, "CPU shares (relative weight)")
	f.Var(&o.cpus, "cpus", "Number of CPUs")
	f.StringVar(&o.cpusetCpus, "cpuset-cpus", "", "CPUs in which to allow execution (0-3, 0,1)")
	f.StringVar(&o.cpusetMems, "cpuset-mems", "", "MEMs in which to allow execution (0-3, 0,1)")
	f.VarP(&o.memory, "memory", "m", "Memory limit")
	f.Var(&o.memoryReservation, "memory-reservation", "Memory soft limit")
	f.Var(&o.memorySwap, "memory-swap", "Swap limit equal to memory plus swap: -1 to enable unlimited swap")
	f.Int64Var(&o.pidsLimit, "pids-limit", 0, "Tune container pids limit (set -1 for unlimited)")
	f.StringVar(&o.restart, "restart", "", "Restart policy to apply when a container exits")
	return cmd
}

type eventsOptions struct {
	since, until, format string
	filter               opts.FilterOpt
}

func (c *berthCLI) newEventsCommand() *cobra.Command {
	o := eventsOptions{filter: opts.NewFilterOpt()}
	cmd := &cobra.Command{
		Use:   "events [OPTIONS]",
		Short: "Get real time events from the server",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runEvents(cmd.Context(), &o)
		},
		Annotations: map[string]string{"aliases": "berth system events, berth events"},
	}
	f := cmd.Flags()
	f.StringVar(&o.since, "since", "", "Show all events created since timestamp")
	f.StringVar(&o.until, "until", "", "Stream events until this timestamp")
	f.VarP(&o.filter, "filter", "f", "Filter output based on conditions provided")
	f.StringVar(&o.format, "format", "", "Format output using a custom template:\n'json':             Print in JSON format\n'TEMPLATE':         Print output using the given Go template.")
	return cmd
}

func (c *berthCLI) runEvents(ctx context.Context, o *eventsOptions) error {
	var tmpl func(events.Message) error
	switch o.format {
	case "":
		tmpl = func(m events.Message) error { return printEvent(c.out, m) }
	default:
		format := o.format
		if format == formatter.JSONFormatKey {
			format = "{{json .}}"
		}
		t, err := formatter.ParseTemplate(format)
		if err != nil {
			return fmt.Errorf("template parsing error: %w", err)
		}
		tmpl = func(m events.Message) error {
			if err := t.Execute(c.out, m); err != nil {
				return err
			}
			_, err := fmt.Fprintln(c.out)
			return err
		}
	}
	api, err := c.Client()
	if err != nil {
		return err
	}
	res := api.Events(ctx, client.EventsListOptions{Since: o.since, Until: o.until, Filters: o.filter.Value()})
	for {
		select {
		case m := <-res.Messages:
			if err := tmpl(m); err != nil {
				return err
			}
		case err := <-res.Err:
			if err == nil || errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// printEvent prints an event in docker's default format: time, type,
// action, actor ID and the sorted attributes.
func printEvent(w io.Writer, m events.Message) error {
	ts := time.Unix(0, m.TimeNano)
	if m.TimeNano == 0 {
		ts = time.Unix(m.Time, 0)
	}
	var attrs []string
	for k, v := range m.Actor.Attributes {
		attrs = append(attrs, k+"="+v)
	}
	sort.Strings(attrs)
	line := ts.Format("2006-01-02T15:04:05.000000000Z07:00") + " " + string(m.Type) + " " + string(m.Action) + " " + m.Actor.ID
	if len(attrs) > 0 {
		line += " (" + strings.Join(attrs, ", ") + ")"
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

// humanSize is docker's BytesSize/HumanSize pair for stats columns.
func humanSize(v float64) string { return units.HumanSizeWithPrecision(v, 3) }
