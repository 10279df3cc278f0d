package cli

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/distribution/reference"
	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/types"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// dockerHubServer is the key docker stores Docker Hub credentials under.
const dockerHubServer = "https://index.docker.io/v1/"

// configFile loads the client config (~/.docker/config.json, or --config,
// or $DOCKER_CONFIG): berth and docker share logins.
func (c *berthCLI) configFile() (*configfile.ConfigFile, error) {
	return config.Load(c.opts.config)
}

// credentialKey is where docker keeps a registry's credentials: Docker Hub
// under its v1 index URL, others under their host[:port].
func credentialKey(host string) string {
	switch host {
	case "", "docker.io", "index.docker.io", "registry-1.docker.io":
		return dockerHubServer
	}
	return host
}

// serverKey normalises what `login`/`logout` were given.
func serverKey(server string) string {
	s := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://"), "/")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	if server == dockerHubServer {
		return dockerHubServer
	}
	return credentialKey(s)
}

// encodedAuth is the X-Registry-Auth value for the registry of an image
// name, from the stored credentials (credsStore/credHelpers honoured); ""
// when there are none.
func (c *berthCLI) encodedAuth(imageName string) string {
	named, err := reference.ParseNormalizedNamed(imageName)
	if err != nil {
		return ""
	}
	cf, err := c.configFile()
	if err != nil {
		return ""
	}
	ac, err := cf.GetAuthConfig(credentialKey(reference.Domain(named)))
	if err != nil || (ac.Username == "" && ac.IdentityToken == "" && ac.RegistryToken == "") {
		return ""
	}
	return encodeAuth(registry.AuthConfig{
		Username: ac.Username, Password: ac.Password, ServerAddress: ac.ServerAddress,
		IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken,
	})
}

func encodeAuth(ac registry.AuthConfig) string {
	b, _ := json.Marshal(ac)
	return base64.URLEncoding.EncodeToString(b)
}

func (c *berthCLI) newPushCommand() *cobra.Command {
	var all, quiet bool
	var platform string
	cmd := &cobra.Command{
		Use:   "push [OPTIONS] NAME[:TAG]",
		Short: "Upload an image to a registry",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runPush(cmd.Context(), args[0], all, quiet, platform)
		},
		Annotations: map[string]string{"category-top": "6", "aliases": "berth image push, berth push"},
	}
	f := cmd.Flags()
	f.BoolVarP(&all, "all-tags", "a", false, "Push all tags of an image to the repository")
	f.BoolVarP(&quiet, "quiet", "q", false, "Suppress verbose output")
	f.StringVar(&platform, "platform", "", "Push a platform-specific manifest as a single-platform image to the registry")
	f.Bool("disable-content-trust", true, "Skip image signing")
	return cmd
}

func (c *berthCLI) runPush(ctx context.Context, name string, all, quiet bool, platform string) error {
	named, err := c.tagOrAll(name, all, quiet)
	if err != nil {
		return err
	}
	api, err := c.Client()
	if err != nil {
		return err
	}
	opts := client.ImagePushOptions{All: all, RegistryAuth: c.encodedAuth(named.String())}
	if platform != "" {
		p, err := parsePlatform(platform)
		if err != nil {
			return err
		}
		opts.Platform = p
	}
	rc, err := api.ImagePush(ctx, reference.FamiliarString(named), opts)
	if err != nil {
		return err
	}
	defer rc.Close()
	var out io.Writer = c.out
	if quiet {
		out = io.Discard
	}
	if err := c.displayJSONMessages(rc, out); err != nil {
		return err
	}
	if quiet {
		fmt.Fprintln(c.out, named.String())
	}
	return nil
}

func (c *berthCLI) newLoginCommand() *cobra.Command {
	var user, password string
	var passwordStdin bool
	cmd := &cobra.Command{
		Use:   "login [OPTIONS] [SERVER]",
		Short: "Authenticate to a registry",
		Long:  "Authenticate to a registry.\nDefaults to Docker Hub if no server is specified.",
		Args:  requiresMaxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server := ""
			if len(args) == 1 {
				server = args[0]
			}
			return c.runLogin(cmd.Context(), server, user, password, passwordStdin)
		},
		Annotations: map[string]string{"category-top": "9"},
	}
	f := cmd.Flags()
	f.StringVarP(&user, "username", "u", "", "Username")
	f.StringVarP(&password, "password", "p", "", "Password or Personal Access Token (PAT)")
	f.BoolVar(&passwordStdin, "password-stdin", false, "Take the Password or Personal Access Token (PAT) from stdin")
	return cmd
}

func (c *berthCLI) runLogin(ctx context.Context, server, user, password string, passwordStdin bool) error {
	if password != "" {
		fmt.Fprintln(c.err, "WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
		if passwordStdin {
			return errors.New("--password and --password-stdin are mutually exclusive")
		}
	}
	if passwordStdin {
		if user == "" {
			//lint:ignore ST1005 docker's wording
			return errors.New("Must provide --username with --password-stdin")
		}
		b, err := io.ReadAll(c.in)
		if err != nil {
			return err
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	key := dockerHubServer
	if server != "" {
		key = serverKey(server)
	}
	cf, err := c.configFile()
	if err != nil {
		return err
	}
	if user == "" && password == "" {
		// Stored credentials first, as docker does.
		if ac, err := cf.GetAuthConfig(key); err == nil && (ac.Username != "" || ac.IdentityToken != "") {
			if err := c.loginWith(ctx, cf, key, ac, false); err == nil {
				return nil
			}
		}
	}
	if user == "" {
		if !c.in.IsTerminal() {
			return errors.New("Error: Cannot perform an interactive login from a non TTY device")
		}
		fmt.Fprint(c.out, "Username: ")
		line, err := bufio.NewReader(c.in).ReadString('\n')
		if err != nil && line == "" {
			return err
		}
		user = strings.TrimSpace(line)
	}
	if password == "" {
		if !c.in.IsTerminal() {
			return errors.New("Error: Cannot perform an interactive login from a non TTY device")
		}
		fmt.Fprint(c.out, "Password: ")
		b, err := term.ReadPassword(int(c.in.fd))
		fmt.Fprintln(c.out)
		if err != nil {
			return err
		}
		password = string(b)
	}
	if password == "" {
		return errors.New("Error: Password Required")
	}
	return c.loginWith(ctx, cf, key, types.AuthConfig{Username: user, Password: password, ServerAddress: key}, true)
}

func (c *berthCLI) loginWith(ctx context.Context, cf *configfile.ConfigFile, key string, ac types.AuthConfig, store bool) error {
	api, err := c.Client()
	if err != nil {
		return err
	}
	res, err := api.RegistryLogin(ctx, client.RegistryLoginOptions{
		Username: ac.Username, Password: ac.Password, ServerAddress: key,
		IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken,
	})
	if err != nil {
		return err
	}
	if store {
		ac.ServerAddress = key
		if res.Auth.IdentityToken != "" {
			ac.Password, ac.IdentityToken = "", res.Auth.IdentityToken
		}
		cs := cf.GetCredentialsStore(key)
		if err := cs.Store(ac); err != nil {
			return fmt.Errorf("Error saving credentials: %w", err)
		}
		if cf.CredentialsStore == "" && cf.CredentialHelpers[key] == "" {
			fmt.Fprintf(c.err, "\nWARNING! Your credentials are stored unencrypted in '%s'.\nConfigure a credential helper to remove this warning. See\nhttps://docs.docker.com/go/credential-store/\n\n", cf.Filename)
		}
	}
	status := res.Auth.Status
	if status == "" {
		status = "Login Succeeded"
	}
	fmt.Fprintln(c.out, status)
	return nil
}

func (c *berthCLI) newLogoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout [SERVER]",
		Short: "Log out from a registry",
		Long:  "Log out from a registry.\nIf no server is specified, the default is defined by the daemon.",
		Args:  requiresMaxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := dockerHubServer
			if len(args) == 1 {
				key = serverKey(args[0])
			}
			cf, err := c.configFile()
			if err != nil {
				return err
			}
			shown := key
			if key == dockerHubServer {
				shown = dockerHubServer
			}
			if _, ok := cf.AuthConfigs[key]; !ok && cf.CredentialsStore == "" && cf.CredentialHelpers[key] == "" {
				fmt.Fprintf(c.out, "Not logged in to %s\n", shown)
				return nil
			}
			fmt.Fprintf(c.out, "Removing login credentials for %s\n", shown)
			if err := cf.GetCredentialsStore(key).Erase(key); err != nil {
				fmt.Fprintf(c.err, "WARNING: could not erase credentials: %s: %v\n", key, err)
			}
			return nil
		},
		Annotations: map[string]string{"category-top": "10"},
	}
}
