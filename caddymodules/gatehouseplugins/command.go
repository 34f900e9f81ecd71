package gatehouseplugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

// The check-manifest subcommand applies the edge's own rules to a manifest
// before it is deployed: plugin authors had to deploy and read
// manifest_error in /api/services to learn what the published schema does
// not say (reserved prefixes, overlaps, the operator's pins, consent to
// forward_credentials, whether the settings schema compiles).
func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "gatehouse-check-manifest",
		Usage: "[--config <path> [--adapter <name>]] [--service <id>] <manifest.json | - | http://service:port>",
		Short: "Checks a Gatehouse plugin manifest as the edge would",
		Long: `
Reads a plugin manifest from a file, from standard input (-), or from a
running service (its base URL: GET /plugin/manifest, as the edge fetches
it) and checks it with the edge's rules: the version 1 schema, reserved
and overlapping prefixes, and a settings schema that compiles.

With --config (the Caddyfile or JSON config the edge runs), it is also
checked against the gatehouse_plugins registrations there, as the edge
would admit it: the service's pinned prefixes, the prefixes pinned to the
other services, and consent to forward_credentials. The service is the one
named by --service, else the manifest's id. Prefixes another plugin holds
at run time (first come, first served) cannot be known here.

Prints what the manifest declares and exits 0, or prints why the edge
would refuse it and exits 1.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().StringP("config", "c", "", "the edge's configuration file")
			cmd.Flags().StringP("adapter", "a", "", "name of the config adapter (default: caddyfile for a Caddyfile)")
			cmd.Flags().String("service", "", "the registered service id to check against (default: the manifest's id)")
			cmd.Args = cobra.ExactArgs(1)
			cmd.RunE = func(cmd *cobra.Command, args []string) error {
				fs := caddycmd.Flags{FlagSet: cmd.Flags()}
				out, err := checkManifest(args[0], fs.String("config"), fs.String("adapter"), fs.String("service"))
				if err != nil {
					fmt.Fprintln(os.Stderr, "refused:", err)
					os.Exit(1)
				}
				fmt.Println(out)
				return nil
			}
		},
	})
}

// checkManifest loads the manifest at src and checks it; with configFile,
// also against that configuration's registrations. It returns a summary.
func checkManifest(src, configFile, adapter, serviceID string) (string, error) {
	m, err := readManifest(src)
	if err != nil {
		return "", err
	}
	note := "not checked against an edge configuration (--config)"
	if configFile != "" {
		cfg, _, _, err := caddycmd.LoadConfig(configFile, adapter)
		if err != nil {
			return "", fmt.Errorf("--config: %w", err)
		}
		var whole struct {
			Apps struct {
				Plugins *App `json:"gatehouse_plugins"`
			} `json:"apps"`
		}
		if err := json.Unmarshal(cfg, &whole); err != nil {
			return "", fmt.Errorf("--config: %w", err)
		}
		a := whole.Apps.Plugins
		if a == nil {
			return "", errors.New("--config registers no services (no gatehouse_plugins app)")
		}
		if serviceID == "" {
			serviceID = m.ID
		}
		var svc *ServiceConfig
		for i := range a.Services {
			if a.Services[i].ID == serviceID {
				svc = &a.Services[i]
			}
		}
		switch {
		case svc == nil:
			return "", fmt.Errorf("--config registers no service %q, so the edge never fetches this manifest", serviceID)
		case m.ID != svc.ID:
			return "", refuse("manifest id %q is not the registered service id %q", m.ID, svc.ID)
		}
		if err := a.admit(*svc, m); err != nil {
			return "", err
		}
		note = fmt.Sprintf("admitted for service %s at %s", svc.ID, svc.URL)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ok: %s %s (%s), %s\n", m.ID, m.Version, m.Name, note)
	for _, r := range m.Routes {
		fmt.Fprintf(&b, "  route %s: %s", r.Prefix, r.Access)
		if r.ForwardCredentials {
			b.WriteString(", forward_credentials")
		}
		b.WriteByte('\n')
	}
	if m.Settings != nil {
		b.WriteString("  settings: schema compiles\n")
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// readManifest reads a manifest from a file, standard input (-), or a
// service's /plugin/manifest, fetched by the same code and client as the
// edge's checks (no redirects, DefaultTimeout), and parses it.
func readManifest(src string) (*Manifest, error) {
	switch {
	case src == "-":
		return ParseManifest("application/json", os.Stdin)
	case strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://"):
		a := &App{logger: zap.NewNop()}
		a.setup()
		defer a.Stop()
		return a.fetchManifest(context.Background(), strings.TrimSuffix(src, "/"))
	default:
		f, err := os.Open(src)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return ParseManifest("application/json", f)
	}
}
