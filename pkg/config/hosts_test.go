package config_test

import (
	"testing"

	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/harbor"
)

// Only entries with harbor: true reach the Harbor API client, with the registry's own account and TLS.
func TestHarborHostsAreTheHarborEntries(t *testing.T) {
	const y = `
registries:
  - host: harbor.acme.example
    harbor: true
    username: robot$harborflow
    password: ${HARBOR_ROBOT_SECRET}
    ca_file: /etc/harborflow/acme-ca.pem
  - host: localhost:5000
    plain_http: true
`
	cfg, err := config.Parse("h.yaml", []byte(y), env(map[string]string{"HARBOR_ROBOT_SECRET": "s3cr3t"}))
	if err != nil {
		t.Fatal(err)
	}
	hosts := config.HarborHosts(cfg.Registries)
	want := harbor.Host{Name: "harbor.acme.example", Username: "robot$harborflow", Password: "s3cr3t", CAFile: "/etc/harborflow/acme-ca.pem"}
	if len(hosts) != 1 || hosts[0] != want {
		t.Fatalf("HarborHosts = %+v, want [%+v]", hosts, want)
	}
	if u, err := harbor.BaseURL(hosts[0]); err != nil || u.String() != "https://harbor.acme.example/api/v2.0" {
		t.Errorf("BaseURL = %v, %v", u, err)
	}
}
