package secret_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/harborflow/harborflow/pkg/buildah"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/secret"
)

// The libraries' host settings carry a password: no way of printing them shows it.
func TestHostSettingsNeverShowThePassword(t *testing.T) {
	const password = "s3cr3t-robot-password"
	values := []any{
		registry.Host{Name: "harbor.acme.example", Username: "robot$harborflow", Password: password},
		buildah.Host{Name: "harbor.acme.example", Username: "robot$harborflow", Password: password},
	}
	for _, v := range values {
		var out []string
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			out = append(out, fmt.Sprintf(verb, v))
		}
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(j))
		core, logs := observer.New(zap.DebugLevel)
		zap.New(core).Info("host", zap.Any("host", v))
		for _, e := range logs.All() {
			out = append(out, fmt.Sprint(e.ContextMap()))
		}
		for _, o := range out {
			if strings.Contains(o, password) {
				t.Errorf("%T printed the password: %s", v, o)
			}
		}
	}
	if s := secret.Secret(password); s.Value() != password {
		t.Errorf("Value() = %q", s.Value())
	}
}
