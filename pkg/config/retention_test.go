package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
)

const retentionRegistries = `registries:
  - host: harbor.acme.example
    harbor: true
  - host: localhost:5000
`

func TestRetentionPolicies(t *testing.T) {
	c, err := config.Parse("h.yaml", []byte(retentionRegistries+`retention:
  - repositories: ["harbor.acme.example/wso2-*/acme-am"]
    keep_per_version: 3
    protect: ["latest", '^\d+\.\d+\.\d+$']
    min_age: 1h
    dry_run: true
    schedule: 1h
`), env(nil), event.StageRetention)
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Retention[0]; r.KeepPerVersion != 3 || r.MinAge != time.Hour || !r.DryRun || r.Schedule != time.Hour || len(r.Protect) != 2 {
		t.Errorf("retention %+v", r)
	}
	for _, tc := range []struct{ policy, want string }{
		{`{keep_per_version: 3}`, "retention[0].repositories: must list at least one repository glob"},
		{`{repositories: ["*/wso2/am"], keep_per_version: 3}`, "retention[0].repositories[0]: must be a glob of registry/project/repository with a literal registry"},
		{`{repositories: ["localhost:5000/wso2/am"], keep_per_version: 3}`, "retention[0].repositories[0]: needs Harbor's API to read and delete artifacts in localhost:5000"},
		{`{repositories: ["harbor.acme.example/wso2/am"]}`, "retention[0].keep_per_version: must be at least 1, not 0"},
		{`{repositories: ["harbor.acme.example/wso2/am"], keep_per_version: 3, protect: ["("]}`, "retention[0].protect[0]: must be a regular expression"},
		{`{repositories: ["harbor.acme.example/wso2/am"], keep_per_version: 3, min_age: -1h}`, "retention[0].min_age: must not be negative"},
		{`{repositories: ["harbor.acme.example/wso2/am"], keep_per_version: 3, schedule: 10s}`, "retention[0].schedule: must be at least 1m, or 0"},
	} {
		_, err := config.Parse("h.yaml", []byte(retentionRegistries+"retention:\n  - "+tc.policy+"\n"), env(nil), event.StageRetention)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.policy, err, tc.want)
		}
	}
}
