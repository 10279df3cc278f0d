package archive

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/docker/go-connections/nat"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/sys/signal"
)

// validChangeCommands are the Dockerfile instructions docker accepts in
// `import --change` and `commit --change`: those that only set image
// metadata.
var validChangeCommands = map[string]bool{
	"cmd":         true,
	"entrypoint":  true,
	"env":         true,
	"expose":      true,
	"healthcheck": true,
	"label":       true,
	"onbuild":     true,
	"stopsignal":  true,
	"user":        true,
	"volume":      true,
	"workdir":     true,
}

// ApplyChanges applies Dockerfile instructions such as `CMD ["sh"]` or
// `ENV A=b` to cfg, exactly as docker's import and commit --change do
// (variables expand from the config's own ENV; shell forms use the image's
// SHELL or /bin/sh -c). Other instructions, and malformed ones, fail with
// errdefs.ErrInvalidArgument and docker's message; cfg is then unchanged.
func ApplyChanges(cfg *dockerspec.DockerOCIImageConfig, changes []string) error {
	if len(changes) == 0 {
		return nil
	}
	res, err := parser.Parse(strings.NewReader(strings.Join(changes, "\n")))
	if err != nil {
		return invalidf("%v", err)
	}
	var cmds []instructions.Command
	for _, n := range res.AST.Children {
		if !validChangeCommands[strings.ToLower(n.Value)] {
			return invalidf("%s is not a valid change command", n.Value)
		}
		c, err := instructions.ParseCommand(n)
		if err != nil {
			return invalidf("%v", err)
		}
		cmds = append(cmds, c)
	}
	// Work on a copy so a failing instruction leaves cfg as it was.
	work := copyConfig(*cfg)
	lex := shell.NewLex(res.EscapeToken)
	cmdSet := false
	for _, c := range cmds {
		if err := applyChange(&work, c, lex, &cmdSet); err != nil {
			return invalidf("%v", err)
		}
	}
	*cfg = work
	return nil
}

func applyChange(cfg *dockerspec.DockerOCIImageConfig, c instructions.Command, lex *shell.Lex, cmdSet *bool) error {
	if p, ok := c.(instructions.PlatformSpecific); ok {
		if err := p.CheckPlatform("linux"); err != nil {
			return err
		}
	}
	env := shell.EnvsFromSlice(cfg.Env)
	if ex, ok := c.(instructions.SupportsSingleWordExpansion); ok {
		err := ex.Expand(func(word string) (string, error) {
			w, _, err := lex.ProcessWord(word, env)
			return w, err
		})
		if err != nil {
			return err
		}
	}
	if err := ApplyMetadata(cfg, c, lex, env, cmdSet); err != nil {
		if errors.Is(err, ErrNotMetadata) {
			return fmt.Errorf("%s is not a valid change command", strings.ToLower(c.Name()))
		}
		return err
	}
	return nil
}

// ErrNotMetadata is ApplyMetadata's answer for an instruction that does
// more than set image metadata (RUN, COPY, ARG, …).
var ErrNotMetadata = errors.New("not a metadata-only instruction")

// ApplyMetadata applies one metadata-only Dockerfile instruction (ENV,
// LABEL, EXPOSE, USER, VOLUME, STOPSIGNAL, WORKDIR, CMD, ENTRYPOINT,
// HEALTHCHECK, ONBUILD) to cfg as docker's builder does; import --change,
// commit --change and berth's builder share it. The instruction's words
// must already be expanded; env expands EXPOSE's ports. cmdSet records a
// CMD, which a later ENTRYPOINT then keeps. Other instructions get
// ErrNotMetadata, invalid ones a plain error naming the problem.
func ApplyMetadata(cfg *dockerspec.DockerOCIImageConfig, c instructions.Command, lex *shell.Lex, env shell.EnvGetter, cmdSet *bool) error {
	switch c := c.(type) {
	case *instructions.EnvCommand:
		for _, kv := range c.Env {
			set := false
			for i, e := range cfg.Env {
				k, _, _ := strings.Cut(e, "=")
				if shell.EqualEnvKeys(k, kv.Key) {
					cfg.Env[i] = kv.String()
					set = true
					break
				}
			}
			if !set {
				cfg.Env = append(cfg.Env, kv.String())
			}
		}
	case *instructions.LabelCommand:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		for _, kv := range c.Labels {
			cfg.Labels[kv.Key] = kv.Value
		}
	case *instructions.ExposeCommand:
		var ports []string
		for _, p := range c.Ports {
			ps, err := lex.ProcessWords(p, env)
			if err != nil {
				return err
			}
			ports = append(ports, ps...)
		}
		set, _, err := nat.ParsePortSpecs(ports)
		if err != nil {
			return err
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		for p := range set {
			cfg.ExposedPorts[string(p)] = struct{}{}
		}
	case *instructions.UserCommand:
		cfg.User = c.User
	case *instructions.VolumeCommand:
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			if v == "" {
				return errors.New("VOLUME specified can not be an empty string")
			}
			cfg.Volumes[v] = struct{}{}
		}
	case *instructions.StopSignalCommand:
		if _, err := signal.ParseSignal(c.Signal); err != nil {
			return err
		}
		cfg.StopSignal = c.Signal
	case *instructions.WorkdirCommand:
		if c.Path == "" {
			return errors.New("cannot normalize nothing")
		}
		if path.IsAbs(c.Path) {
			cfg.WorkingDir = path.Clean(c.Path)
		} else {
			cfg.WorkingDir = path.Join("/", cfg.WorkingDir, c.Path)
		}
	case *instructions.CmdCommand:
		cfg.Cmd = cmdLine(c.ShellDependantCmdLine, cfg)
		if len(c.CmdLine) != 0 {
			*cmdSet = true
		}
	case *instructions.EntrypointCommand:
		cfg.Entrypoint = cmdLine(c.ShellDependantCmdLine, cfg)
		// A new entrypoint drops an inherited CMD unless one was given
		// since (in this stage, or this set of changes).
		if !*cmdSet {
			cfg.Cmd = nil
		}
	case *instructions.HealthCheckCommand:
		cfg.Healthcheck = c.Health
	case *instructions.OnbuildCommand:
		cfg.OnBuild = append(cfg.OnBuild, c.Expression)
	default:
		return ErrNotMetadata
	}
	return nil
}

// cmdLine resolves a CMD or ENTRYPOINT: the exec form as given, the shell
// form behind the image's shell.
func cmdLine(c instructions.ShellDependantCmdLine, cfg *dockerspec.DockerOCIImageConfig) []string {
	if len(c.CmdLine) == 0 {
		return []string{}
	}
	if !c.PrependShell {
		return append([]string(nil), c.CmdLine...)
	}
	sh := cfg.Shell
	if len(sh) == 0 {
		sh = []string{"/bin/sh", "-c"}
	}
	return append(append([]string(nil), sh...), c.CmdLine...)
}

// copyConfig deep-copies the slices and maps a change may modify.
func copyConfig(c dockerspec.DockerOCIImageConfig) dockerspec.DockerOCIImageConfig {
	c.Env = append([]string(nil), c.Env...)
	c.Cmd = append([]string(nil), c.Cmd...)
	c.Entrypoint = append([]string(nil), c.Entrypoint...)
	c.OnBuild = append([]string(nil), c.OnBuild...)
	c.Labels = copyMap(c.Labels)
	c.ExposedPorts = copyMap(c.ExposedPorts)
	c.Volumes = copyMap(c.Volumes)
	if c.Healthcheck != nil {
		h := *c.Healthcheck
		h.Test = append([]string(nil), h.Test...)
		c.Healthcheck = &h
	}
	return c
}

func copyMap[V any](m map[string]V) map[string]V {
	if m == nil {
		return nil
	}
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
