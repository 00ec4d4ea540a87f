package harborflow_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

// TestRebuildCommand: harborflow rebuild builds a recipe from what its base tag points to now, does nothing
// new for a digest it built, takes the next build number with --force, and names the recipes it knows; it
// needs no webhook secret.
func TestRebuildCommand(t *testing.T) {
	reg := registrytest.New(t)
	reg.PushImage(t, "wso2-apim/am:4.2.0", registrytest.Image{Labels: map[string]string{"update_level": "16"},
		Files: map[string]string{"home/wso2carbon/README": "am"}})
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "images", "acme-am"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "images", "acme-am", "acme.conf"), []byte("acme"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := writeConfig(t, dir, freeAddr(t), freeAddr(t))
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, `registries:
  - host: %s
    plain_http: true
rebuilds:
  - name: acme-am
    base: %s
    context: images/acme-am
    owner: "802:802"
    target: %s
`, reg.Host, reg.Ref("wso2-apim/am:4.2.0"), reg.Ref("acme/am"))
	f.Close()
	t.Setenv("HARBOR_WEBHOOK_AUTH", "Bearer cli")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	startStages(t, cfg)
	// harborflow rebuild runs the rebuilder: it needs the registries' credentials, not the receiver's secrets.
	unsetenv(t, "HARBOR_WEBHOOK_AUTH")

	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"rebuild", "acme-am"}, "acme-am: " + reg.Ref("acme/am") + ":4.2.0.16.1 (sha256:"},
		{[]string{"rebuild", "acme-am"}, "acme-am: already built: " + reg.Ref("acme/am") + ":4.2.0.16.1 (sha256:"},
		{[]string{"rebuild", "acme-am", "--force"}, ":4.2.0.16.2 (sha256:"},
	} {
		out, err := runCLI(t, append([]string{"--config", path}, step.args...)...)
		if err != nil || !strings.Contains(out, step.want) {
			t.Errorf("%v: %q, %v; want %q", step.args, out, err, step.want)
		}
	}
	if _, err := runCLI(t, "--config", path, "rebuild", "acme"); err == nil || !strings.Contains(err.Error(), `no recipe named "acme" (recipes: acme-am)`) {
		t.Errorf("unknown recipe: %v", err)
	}
	out, err := runCLI(t, "--config", path, "events", "--subject", "image.rebuilt")
	if err != nil || strings.Count(out, "\n") != 2 {
		t.Errorf("image.rebuilt messages: %v\n%s; want 2 (the repeat is stored once)", err, out)
	}
}
