package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
)

func TestSigning(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"cosign.key", "cosign.pub", "old.pub"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := writeFile(t, filepath.Join(dir, "h.yaml"), `signing:
  key: cosign.key
  password: ${COSIGN_PASSWORD}
  public_keys: [cosign.pub, old.pub]
`)
	if _, err := config.Load(path, event.StageRebuilder); err == nil ||
		!strings.Contains(err.Error(), "signing.password: environment variable COSIGN_PASSWORD is not set") {
		t.Fatalf("without the password: %v", err)
	}
	t.Setenv("COSIGN_PASSWORD", "s3cr3t")
	c, err := config.Load(path, event.StageRebuilder)
	if err != nil {
		t.Fatal(err)
	}
	if c.Signing.Key != filepath.Join(dir, "cosign.key") || c.Signing.Password != "s3cr3t" ||
		strings.Join(c.Signing.PublicKeys, ",") != filepath.Join(dir, "cosign.pub")+","+filepath.Join(dir, "old.pub") {
		t.Errorf("signing %+v (paths are relative to the file)", c.Signing)
	}
	// The inspector does not sign: it needs no password.
	t.Setenv("COSIGN_PASSWORD", "")
	os.Unsetenv("COSIGN_PASSWORD")
	if _, err := config.Load(path, event.StageInspector); err != nil {
		t.Errorf("the inspector: %v", err)
	}

	for _, tc := range []struct{ yaml, want string }{
		{"signing:\n  key: missing.key\n", "h.yaml:2: signing.key: cannot read"},
		{"signing:\n  password: x\n", "h.yaml:2: signing.password: is set, but signing.key is not"},
		{"signing:\n  key: cosign.key\n  public_keys: [gone.pub]\n", "h.yaml:3: signing.public_keys[0]: cannot read"},
		{"signing:\n  public_keys: [gone.pub]\n", "h.yaml:2: signing.public_keys[0]: cannot read"},
	} {
		p := writeFile(t, filepath.Join(dir, "bad.yaml"), tc.yaml)
		if _, err := config.Load(p, event.StageRebuilder); err == nil || !strings.Contains(err.Error(), strings.Replace(tc.want, "h.yaml", "bad.yaml", 1)) {
			t.Errorf("%q: %v; want %q", tc.yaml, err, tc.want)
		}
	}
}
