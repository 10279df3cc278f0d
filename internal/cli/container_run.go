package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/moby/moby/client"
	"github.com/moby/term"
	"github.com/spf13/cobra"
)

// outputDrainTimeout bounds how long `run` waits, after the container has
// exited, for the rest of its output to arrive; a daemon closes the attach
// stream at exit, so this only matters when it does not.
const outputDrainTimeout = 10 * time.Second

type runOptions struct {
	createOptions
	detach     bool
	sigProxy   bool
	detachKeys string
}

func (c *berthCLI) newRunCommand() *cobra.Command {
	var o runOptions
	var copts *containerOptions
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create and run a new container from an image",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			copts.Image = args[0]
			copts.Args = args[1:]
			return c.runRun(cmd, &o, copts)
		},
		Annotations: map[string]string{"category-top": "1", "aliases": "berth container run, berth run"},
	}
	flags := cmd.Flags()
	// Flags stop at the image: everything after it is the command.
	flags.SetInterspersed(false)
	flags.BoolVarP(&o.detach, "detach", "d", false, "Run container in background and print container ID")
	flags.BoolVar(&o.sigProxy, "sig-proxy", true, "Proxy received signals to the process")
	flags.StringVar(&o.detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	addCreateFlags(flags, &o.createOptions, "running")
	copts = addContainerFlags(flags, c.lookupEnv)
	return cmd
}

func (c *berthCLI) runRun(cmd *cobra.Command, o *runOptions, copts *containerOptions) error {
	if err := validatePullOpt(o.pull); err != nil {
		return StatusError{Status: withHelp(err, cmd).Error(), StatusCode: 125, Cause: err}
	}
	cfg, err := copts.parse(cmd.Flags())
	if err != nil {
		return StatusError{Status: withHelp(err, cmd).Error(), StatusCode: 125, Cause: err}
	}
	return c.runContainer(cmd, o, copts, cfg)
}

// runContainer is docker's `run`: create (pulling a missing image), attach
// the requested streams, post the wait, start, then wait for the exit code
// and the end of the output.
func (c *berthCLI) runContainer(cmd *cobra.Command, o *runOptions, copts *containerOptions, cfg *containerConfig) error {
	ctx := cmd.Context()
	config := cfg.Config
	config.ArgsEscaped = false

	if !o.detach {
		if err := c.in.CheckTty(config.AttachStdin, config.Tty); err != nil {
			return err
		}
	} else {
		if copts.attach.Len() != 0 {
			return errors.New("conflicting options: cannot specify both --attach and --detach")
		}
		config.AttachStdin, config.AttachStdout, config.AttachStderr, config.StdinOnce = false, false, false, false
	}
	if config.Tty {
		// In TTY mode ^C is a byte for the container, not a signal to relay.
		o.sigProxy = false
	}

	attach := config.AttachStdin || config.AttachStdout || config.AttachStderr
	var sigc *signalCatch
	if attach && o.sigProxy {
		// Caught from before the start on; registering takes a while, so it
		// runs alongside the create and attach requests.
		sigc = notifyAllSignals()
		defer sigc.stop()
	}
	id, err := c.createContainer(ctx, cfg, &o.createOptions)
	if err != nil {
		return toStatusError(wrapConnError(c.hostOrDefault(), err), cmd)
	}
	api, err := c.Client()
	if err != nil {
		return err
	}

	var attachWait func(statusC <-chan int, startErr error) error
	if attach {
		attachWait, err = c.setupContainerAttach(ctx, api, id, o, cfg, sigc)
		if err != nil {
			return err
		}
	}

	// The wait is posted before the start: a container that exits at once
	// must not be missed, and an --rm one must not be gone before we ask.
	// Detached without --rm nothing reads it: no request at all.
	statusCtx, cancelStatus := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelStatus()
	var statusC <-chan int
	if attach || copts.autoRemove {
		statusC = c.waitExitOrRemoved(statusCtx, api, id, copts.autoRemove)
	}
	if !attach {
		// Detached: the ID comes first, as docker prints it even when the
		// start then fails.
		fmt.Fprintln(c.out, id)
	}

	if sigc != nil {
		sigc.wait()
	}
	if _, err := api.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		if attach {
			_ = attachWait(statusC, err)
		}
		if copts.autoRemove {
			<-statusC // the daemon removes it; let that finish
		}
		return toStatusError(wrapConnError(c.hostOrDefault(), err), cmd)
	}
	if attach {
		return attachWait(statusC, nil)
	}
	return nil
}

// setupContainerAttach attaches to the created container and returns the
// function that, after the start, waits for the output and the exit code.
func (c *berthCLI) setupContainerAttach(ctx context.Context, api client.APIClient, id string, o *runOptions, cfg *containerConfig, sigc *signalCatch) (func(<-chan int, error) error, error) {
	config := cfg.Config
	detachKeys := o.detachKeys
	// The stream must outlive a canceled command context: it ends when the
	// container's output does.
	attachCtx, attachCancel := context.WithCancel(context.WithoutCancel(ctx))
	errC, closeFn, err := c.attachContainer(attachCtx, id, config, client.ContainerAttachOptions{
		Stream:     true,
		Stdin:      config.AttachStdin,
		Stdout:     config.AttachStdout,
		Stderr:     config.AttachStderr,
		DetachKeys: detachKeys,
	})
	if err != nil {
		attachCancel()
		return nil, err
	}
	// Listen for window changes before the start (see monitorTtySize).
	ttyStarted := func() {}
	if config.Tty && c.out.IsTerminal() {
		ttyStarted = c.monitorTtySize(attachCtx, api, id)
	}
	if sigc != nil {
		go forwardAllSignals(context.WithoutCancel(ctx), api, id, sigc)
	}
	return func(statusC <-chan int, startErr error) error {
		defer attachCancel()
		defer closeFn()
		if sigc != nil {
			defer sigc.stop()
		}
		if startErr != nil {
			attachCancel()
			<-errC
			return nil
		}
		ttyStarted()
		select {
		case err := <-errC:
			if err != nil {
				var esc term.EscapeError
				if errors.As(err, &esc) {
					return nil // the user detached
				}
				slog.Debug("error hijack", "error", err)
				return err
			}
			if status := <-statusC; status != 0 {
				return StatusError{StatusCode: status}
			}
		case status := <-statusC:
			// The container is gone; its output must still be copied out
			// completely before we exit.
			select {
			case <-errC:
			case <-time.After(outputDrainTimeout):
				attachCancel()
				<-errC
			}
			if status != 0 {
				return StatusError{StatusCode: status}
			}
		}
		return nil
	}, nil
}
