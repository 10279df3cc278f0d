package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/go-units"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
	"github.com/moby/term"
	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/internal/cli/opts"
)

// startErrorCode maps a failed start of an attached container like run
// does: 127 command not found, 126 not executable, else 125.
func startErrorCode(err error) int {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "no such file or directory"),
		strings.Contains(msg, "system cannot find the file specified"):
		return 127
	case strings.Contains(msg, syscall.EACCES.Error()), strings.Contains(msg, syscall.EISDIR.Error()):
		return 126
	}
	return 125
}

type startOptions struct {
	attach     bool
	openStdin  bool
	detachKeys string
	checkpoint string
	cpDir      string
}

func (c *berthCLI) newStartCommand() *cobra.Command {
	var o startOptions
	cmd := &cobra.Command{
		Use:   "start [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Start one or more stopped containers",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runStart(cmd.Context(), &o, args)
		},
		Annotations: map[string]string{"aliases": "berth container start, berth start"},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.attach, "attach", "a", false, "Attach STDOUT/STDERR and forward signals")
	f.BoolVarP(&o.openStdin, "interactive", "i", false, "Attach container's STDIN")
	f.StringVar(&o.detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	f.StringVar(&o.checkpoint, "checkpoint", "", "Restore from this checkpoint")
	f.StringVar(&o.cpDir, "checkpoint-dir", "", "Use a custom checkpoint storage directory")
	// Experimental in docker, hidden unless the daemon is experimental;
	// berth has no checkpoints.
	_ = f.MarkHidden("checkpoint")
	_ = f.MarkHidden("checkpoint-dir")
	return cmd
}

func (c *berthCLI) runStart(ctx context.Context, o *startOptions, ids []string) error {
	for flag, v := range map[string]string{"--checkpoint": o.checkpoint, "--checkpoint-dir": o.cpDir} {
		if v != "" {
			return fmt.Errorf("%q is only supported on a daemon with experimental features enabled", flag)
		}
	}
	api, err := c.Client()
	if err != nil {
		return err
	}
	if !o.attach && !o.openStdin {
		var failed []string
		for _, id := range ids {
			if _, err := api.ContainerStart(ctx, id, client.ContainerStartOptions{CheckpointID: o.checkpoint, CheckpointDir: o.cpDir}); err != nil {
				fmt.Fprintln(c.err, wrapConnError(c.hostOrDefault(), err))
				failed = append(failed, id)
				continue
			}
			fmt.Fprintln(c.out, id)
		}
		if len(failed) > 0 {
			return fmt.Errorf("failed to start containers: %s", strings.Join(failed, ", "))
		}
		return nil
	}
	if len(ids) > 1 {
		return errors.New("you cannot start and attach multiple containers at once")
	}
	insp, err := api.ContainerInspect(ctx, ids[0], client.ContainerInspectOptions{})
	if err != nil {
		return err
	}
	ctr := insp.Container
	if ctr.Config == nil || ctr.HostConfig == nil {
		return fmt.Errorf("container %s: incomplete inspect data from the daemon", ids[0])
	}
	if !ctr.Config.Tty {
		sigc := notifyAllSignals()
		sigc.wait()
		go forwardAllSignals(context.WithoutCancel(ctx), api, ctr.ID, sigc)
		defer sigc.stop()
	}
	attachCtx, attachCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer attachCancel()
	errC, closeFn, err := c.attachContainer(attachCtx, ctr.ID, ctr.Config, client.ContainerAttachOptions{
		Stream:     true,
		Stdin:      o.openStdin && ctr.Config.OpenStdin,
		Stdout:     true,
		Stderr:     true,
		DetachKeys: o.detachKeys,
	})
	if err != nil {
		return err
	}
	defer closeFn()
	statusCtx, cancelStatus := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelStatus()
	statusC := c.waitExitOrRemoved(statusCtx, api, ctr.ID, ctr.HostConfig.AutoRemove)
	ttyStarted := func() {}
	if ctr.Config.Tty && c.out.IsTerminal() {
		ttyStarted = c.monitorTtySize(attachCtx, api, ctr.ID)
	}
	if _, err := api.ContainerStart(ctx, ctr.ID, client.ContainerStartOptions{CheckpointID: o.checkpoint, CheckpointDir: o.cpDir}); err != nil {
		attachCancel()
		<-errC
		if ctr.HostConfig.AutoRemove {
			<-statusC
		}
		err = wrapConnError(c.hostOrDefault(), err)
		return StatusError{Status: err.Error(), StatusCode: startErrorCode(err), Cause: err}
	}
	ttyStarted()
	if err := <-errC; err != nil {
		var esc term.EscapeError
		if errors.As(err, &esc) {
			return nil
		}
		return err
	}
	if status := <-statusC; status != 0 {
		return StatusError{StatusCode: status}
	}
	return nil
}

// parallel runs op for each container (up to 50 at a time) and returns
// the results in the order the containers were given.
func parallel(ctx context.Context, ids []string, op func(ctx context.Context, id string) error) []error {
	errs := make([]error, len(ids))
	sem := make(chan struct{}, 50)
	done := make(chan struct{})
	for i, id := range ids {
		go func() {
			sem <- struct{}{}
			errs[i] = op(ctx, id)
			<-sem
			done <- struct{}{}
		}()
	}
	for range ids {
		<-done
	}
	return errs
}

func (c *berthCLI) reportEach(ids []string, errs []error) error {
	var msgs []string
	for i, id := range ids {
		if errs[i] != nil {
			msgs = append(msgs, wrapConnError(c.hostOrDefault(), errs[i]).Error())
			continue
		}
		fmt.Fprintln(c.out, id)
	}
	if len(msgs) > 0 {
		return errors.New(strings.Join(msgs, "\n"))
	}
	return nil
}

// stopOptions are the flags stop and restart share.
type stopOptions struct {
	signal  string
	timeout int
}

func (o *stopOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&o.signal, "signal", "s", "", "Signal to send to the container")
	f.IntVarP(&o.timeout, "timeout", "t", 0, "Seconds to wait before killing the container")
	f.IntVar(&o.timeout, "time", 0, "Seconds to wait before killing the container (deprecated: use --timeout)")
	_ = f.MarkDeprecated("time", "use --timeout instead")
}

// timeoutOf is the timeout the user gave (--timeout or the older --time),
// nil for the container's own.
func (o *stopOptions) timeoutOf(cmd *cobra.Command) (*int, error) {
	if cmd.Flags().Changed("time") && cmd.Flags().Changed("timeout") {
		return nil, errors.New("conflicting options: cannot specify both --timeout and --time")
	}
	if cmd.Flags().Changed("timeout") || cmd.Flags().Changed("time") {
		return &o.timeout, nil
	}
	return nil, nil
}

func (c *berthCLI) newStopCommand() *cobra.Command {
	var o stopOptions
	cmd := &cobra.Command{
		Use:   "stop [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Stop one or more running containers",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			timeout, err := o.timeoutOf(cmd)
			if err != nil {
				return err
			}
			api, err := c.Client()
			if err != nil {
				return err
			}
			errs := parallel(cmd.Context(), args, func(ctx context.Context, id string) error {
				_, err := api.ContainerStop(ctx, id, client.ContainerStopOptions{Signal: o.signal, Timeout: timeout})
				return err
			})
			return c.reportEach(args, errs)
		},
		Annotations: map[string]string{"aliases": "berth container stop, berth stop"},
	}
	o.addFlags(cmd)
	return cmd
}

func (c *berthCLI) newRestartCommand() *cobra.Command {
	var o stopOptions
	cmd := &cobra.Command{
		Use:   "restart [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Restart one or more containers",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			timeout, err := o.timeoutOf(cmd)
			if err != nil {
				return err
			}
			api, err := c.Client()
			if err != nil {
				return err
			}
			// One after the other, as docker does: restarts are often
			// order-sensitive.
			errs := make([]error, len(args))
			for i, id := range args {
				_, errs[i] = api.ContainerRestart(cmd.Context(), id, client.ContainerRestartOptions{Signal: o.signal, Timeout: timeout})
			}
			return c.reportEach(args, errs)
		},
		Annotations: map[string]string{"aliases": "berth container restart, berth restart"},
	}
	o.addFlags(cmd)
	return cmd
}

func (c *berthCLI) newKillCommand() *cobra.Command {
	var sig string
	cmd := &cobra.Command{
		Use:   "kill [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Kill one or more running containers",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.Client()
			if err != nil {
				return err
			}
			errs := parallel(cmd.Context(), args, func(ctx context.Context, id string) error {
				_, err := api.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: sig})
				return err
			})
			return c.reportEach(args, errs)
		},
		Annotations: map[string]string{"aliases": "berth container kill, berth kill"},
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "", "Signal to send to the container")
	return cmd
}

type rmOptions struct {
	volumes, link, force bool
}

func (c *berthCLI) newRmCommand() *cobra.Command {
	var o rmOptions
	cmd := &cobra.Command{
		Use:   "rm [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Remove one or more containers",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.Client()
			if err != nil {
				return err
			}
			errs := parallel(cmd.Context(), args, func(ctx context.Context, id string) error {
				id = strings.Trim(id, "/")
				if id == "" {
					//lint:ignore ST1005 docker's exact message
					return errors.New("Container name cannot be empty")
				}
				_, err := api.ContainerRemove(ctx, id, client.ContainerRemoveOptions{RemoveVolumes: o.volumes, RemoveLinks: o.link, Force: o.force})
				return err
			})
			var msgs []string
			for i, id := range args {
				if err := errs[i]; err != nil {
					if o.force && cerrdefs.IsNotFound(err) {
						// rm -f of something already gone is not a failure.
						fmt.Fprintln(c.err, err)
						continue
					}
					msgs = append(msgs, wrapConnError(c.hostOrDefault(), err).Error())
					continue
				}
				fmt.Fprintln(c.out, id)
			}
			if len(msgs) > 0 {
				return errors.New(strings.Join(msgs, "\n"))
			}
			return nil
		},
		Annotations: map[string]string{"aliases": "berth container rm, berth container remove, berth rm"},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.volumes, "volumes", "v", false, "Remove anonymous volumes associated with the container")
	f.BoolVarP(&o.link, "link", "l", false, "Remove the specified link")
	f.BoolVarP(&o.force, "force", "f", false, "Force the removal of a running container (uses SIGKILL)")
	return cmd
}

func (c *berthCLI) newWaitCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "wait CONTAINER [CONTAINER...]",
		Short: "Block until one or more containers stop, then print their exit codes",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.Client()
			if err != nil {
				return err
			}
			var msgs []string
			for _, id := range args {
				res := api.ContainerWait(cmd.Context(), id, client.ContainerWaitOptions{})
				select {
				case r := <-res.Result:
					fmt.Fprintf(c.out, "%d\n", r.StatusCode)
				case err := <-res.Error:
					msgs = append(msgs, wrapConnError(c.hostOrDefault(), err).Error())
				}
			}
			if len(msgs) > 0 {
				return errors.New(strings.Join(msgs, "\n"))
			}
			return nil
		},
		Annotations: map[string]string{"aliases": "berth container wait, berth wait"},
	}
}

func (c *berthCLI) newRenameCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "rename CONTAINER NEW_NAME",
		Short: "Rename a container",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			oldName, newName := strings.TrimSpace(args[0]), strings.TrimSpace(args[1])
			if oldName == "" || newName == "" {
				return errors.New("Error: Neither old nor new names may be empty")
			}
			api, err := c.Client()
			if err != nil {
				return err
			}
			if _, err := api.ContainerRename(cmd.Context(), oldName, client.ContainerRenameOptions{NewName: newName}); err != nil {
				fmt.Fprintln(c.err, wrapConnError(c.hostOrDefault(), err))
				return fmt.Errorf("Error: failed to rename container named %s", oldName)
			}
			return nil
		},
		Annotations: map[string]string{"aliases": "berth container rename, berth rename"},
	}
}

type logsOptions struct {
	follow, timestamps, details bool
	since, until, tail          string
}

func (c *berthCLI) newLogsCommand() *cobra.Command {
	var o logsOptions
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] CONTAINER",
		Short: "Fetch the logs of a container",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runLogs(cmd.Context(), &o, args[0])
		},
		Annotations: map[string]string{"aliases": "berth container logs, berth logs"},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.follow, "follow", "f", false, "Follow log output")
	f.StringVar(&o.since, "since", "", `Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)`)
	f.StringVar(&o.until, "until", "", `Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)`)
	f.BoolVarP(&o.timestamps, "timestamps", "t", false, "Show timestamps")
	f.BoolVar(&o.details, "details", false, "Show extra details provided to logs")
	f.StringVarP(&o.tail, "tail", "n", "all", "Number of lines to show from the end of the logs")
	return cmd
}

func (c *berthCLI) runLogs(ctx context.Context, o *logsOptions, name string) error {
	api, err := c.Client()
	if err != nil {
		return err
	}
	insp, err := api.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if err != nil {
		return err
	}
	// The client turns --since/--until durations ("10m") and timestamps
	// into the API's Unix timestamps, relative to this machine's clock.
	rc, err := api.ContainerLogs(ctx, insp.Container.ID, client.ContainerLogsOptions{
		ShowStdout: true,
		ShowStderr: true,
		Since:      o.since,
		Until:      o.until,
		Timestamps: o.timestamps,
		Follow:     o.follow,
		Tail:       o.tail,
		Details:    o.details,
	})
	if err != nil {
		return err
	}
	defer rc.Close()
	if insp.Container.Config != nil && insp.Container.Config.Tty {
		_, err = io.Copy(c.out, rc)
	} else {
		_, err = stdcopy.StdCopy(c.out, c.err, rc)
	}
	return err
}

type pruneOptions struct {
	force  bool
	all    bool
	filter opts.FilterOpt
}

func (c *berthCLI) newContainerPruneCommand() *cobra.Command {
	o := pruneOptions{filter: opts.NewFilterOpt()}
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove all stopped containers",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !o.force {
				ok, err := c.confirm(cmd.Context(), "WARNING! This will remove all stopped containers.\nAre you sure you want to continue?")
				if err != nil || !ok {
					return err
				}
			}
			api, err := c.Client()
			if err != nil {
				return err
			}
			res, err := api.ContainerPrune(cmd.Context(), client.ContainerPruneOptions{Filters: o.filter.Value()})
			if err != nil {
				return err
			}
			var reclaimed uint64
			if len(res.Report.ContainersDeleted) > 0 {
				var sb strings.Builder
				sb.WriteString("Deleted Containers:\n")
				for _, id := range res.Report.ContainersDeleted {
					sb.WriteString(id + "\n")
				}
				fmt.Fprintln(c.out, sb.String())
				reclaimed = res.Report.SpaceReclaimed
			}
			fmt.Fprintln(c.out, "Total reclaimed space:", units.HumanSize(float64(reclaimed)))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&o.force, "force", "f", false, "Do not prompt for confirmation")
	cmd.Flags().Var(&o.filter, "filter", `Provide filter values (e.g. "until=<timestamp>")`)
	return cmd
}

// confirm asks a y/N question on stdin, as docker's prune commands do.
func (c *berthCLI) confirm(ctx context.Context, message string) (bool, error) {
	fmt.Fprint(c.out, message+" [y/N] ")
	answer := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(c.in).ReadString('\n')
		answer <- strings.TrimSpace(line)
	}()
	select {
	case a := <-answer:
		return strings.EqualFold(a, "y"), nil
	case <-ctx.Done():
		fmt.Fprintln(c.out)
		return false, ctx.Err()
	}
}
