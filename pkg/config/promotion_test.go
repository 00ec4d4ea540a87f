package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/config"
)

// chain is DESIGN.md's acme-am chain: dev → staging → prod on one Harbor.
func chain() config.Promotion {
	return config.Promotion{
		Name: "acme-am",
		Stages: []config.PromotionStage{
			{Repository: "harbor.acme.example/wso2-dev/acme-am"},
			{Repository: "harbor.acme.example/wso2-staging/acme-am", Gates: config.Gates{
				MaxSeverity: "Medium", NonRoot: true, AllowedPorts: []string{"9443/tcp", "8243/tcp"}}},
			{Name: "prod", Repository: "harbor.acme.example/wso2-prod/acme-am", Gates: config.Gates{
				MaxSeverity: "Low", Signed: true, Labels: []string{"qa-approved"}, MinAge: 24 * time.Hour, Approval: true}},
		},
		RollingTags: []string{"{{.Version}}", "latest"},
	}
}

var harborRegistry = []config.Registry{{Host: "harbor.acme.example", Harbor: true}}

func TestValidatePromotionsAcceptsDesignChainWithDefaults(t *testing.T) {
	ps, err := config.ValidatePromotions([]config.Promotion{chain()}, harborRegistry)
	if err != nil {
		t.Fatal(err)
	}
	p := ps[0]
	if p.ScanTimeout != 10*time.Minute {
		t.Errorf("scan_timeout = %s, want the 10m default", p.ScanTimeout)
	}
	var names []string
	for _, s := range p.Stages {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, " "); got != "wso2-dev wso2-staging prod" {
		t.Errorf("stage names = %s, want the project unless set", got)
	}
}

func TestValidatePromotionsNamesTheKey(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(p *config.Promotion, regs *[]config.Registry)
		want   string
	}{
		{"bad name", func(p *config.Promotion, _ *[]config.Registry) { p.Name = "Acme_AM" },
			`promotions[0].name: must match [a-z0-9-]+, not "Acme_AM"`},
		{"one stage", func(p *config.Promotion, _ *[]config.Registry) { p.Stages = p.Stages[:1] },
			"promotions[0].stages: must list at least two stages"},
		{"repository with a tag", func(p *config.Promotion, _ *[]config.Registry) {
			p.Stages[1].Repository = "harbor.acme.example/wso2-staging/acme-am:latest"
		}, "promotions[0].stages[1].repository: must be registry/repository without a tag"},
		{"repository without a registry", func(p *config.Promotion, _ *[]config.Registry) { p.Stages[1].Repository = "wso2-staging/acme-am" },
			"promotions[0].stages[1].repository: must be registry/repository"},
		{"repository twice", func(p *config.Promotion, _ *[]config.Registry) {
			p.Stages[2].Repository = p.Stages[0].Repository
			p.Stages[2].Gates = config.Gates{}
		}, "promotions[0].stages[2].repository: harbor.acme.example/wso2-dev/acme-am is already promotions[0].stages[0]"},
		{"stage names collide", func(p *config.Promotion, _ *[]config.Registry) {
			p.Stages[1].Repository = "localhost:5000/wso2-dev/acme-am"
			p.Stages[1].Gates = config.Gates{}
		}, `promotions[0].stages[1].name: "wso2-dev" is already the name of promotions[0].stages[0]: set name on one of them`},
		{"bad stage name", func(p *config.Promotion, _ *[]config.Registry) { p.Stages[2].Name = "Prod" },
			`promotions[0].stages[2].name: must match [a-z0-9][a-z0-9._-]*, not "Prod"`},
		{"gates on the first stage", func(p *config.Promotion, _ *[]config.Registry) { p.Stages[0].Gates.Signed = true },
			"promotions[0].stages[0].gates: must not be set on the first stage"},
		{"severity in the wrong case", func(p *config.Promotion, _ *[]config.Registry) { p.Stages[1].Gates.MaxSeverity = "medium" },
			`promotions[0].stages[1].gates.max_severity: must be None, Low, Medium, High or Critical, not "medium"`},
		{"severity no one means as a threshold", func(p *config.Promotion, _ *[]config.Registry) { p.Stages[1].Gates.MaxSeverity = "Negligible" },
			`promotions[0].stages[1].gates.max_severity: must be None, Low, Medium, High or Critical, not "Negligible"`},
		{"port without protocol", func(p *config.Promotion, _ *[]config.Registry) { p.Stages[1].Gates.AllowedPorts[1] = "8243" },
			`promotions[0].stages[1].gates.allowed_ports[1]: must be PORT/tcp or PORT/udp with PORT from 1 to 65535, e.g. 9443/tcp, not "8243"`},
		{"port out of range", func(p *config.Promotion, _ *[]config.Registry) { p.Stages[1].Gates.AllowedPorts[0] = "70000/tcp" },
			`promotions[0].stages[1].gates.allowed_ports[0]: must be PORT/tcp or PORT/udp`},
		{"port zero", func(p *config.Promotion, _ *[]config.Registry) { p.Stages[1].Gates.AllowedPorts[0] = "0/udp" },
			`promotions[0].stages[1].gates.allowed_ports[0]: must be PORT/tcp or PORT/udp`},
		{"port protocol sctp", func(p *config.Promotion, _ *[]config.Registry) { p.Stages[1].Gates.AllowedPorts[0] = "9443/sctp" },
			`promotions[0].stages[1].gates.allowed_ports[0]: must be PORT/tcp or PORT/udp`},
		{"port twice", func(p *config.Promotion, _ *[]config.Registry) { p.Stages[1].Gates.AllowedPorts[1] = "9443/tcp" },
			`promotions[0].stages[1].gates.allowed_ports[1]: "9443/tcp" is already promotions[0].stages[1].gates.allowed_ports[0]`},
		{"empty label", func(p *config.Promotion, _ *[]config.Registry) { p.Stages[2].Gates.Labels = []string{""} },
			"promotions[0].stages[2].gates.labels[0]: must name a Harbor label"},
		{"negative soak", func(p *config.Promotion, _ *[]config.Registry) { p.Stages[2].Gates.MinAge = -time.Hour },
			"promotions[0].stages[2].gates.min_age: must not be negative"},
		{"rolling tag naming no field", func(p *config.Promotion, _ *[]config.Registry) { p.RollingTags[0] = "{{.Flavour}}" },
			`promotions[0].rolling_tags[0]: tag template "{{.Flavour}}"`},
		{"rolling tag not parsing", func(p *config.Promotion, _ *[]config.Registry) { p.RollingTags[1] = "{{.Version" },
			`promotions[0].rolling_tags[1]: tag template "{{.Version"`},
		{"rolling tag twice", func(p *config.Promotion, _ *[]config.Registry) { p.RollingTags[1] = "{{.Version}}" },
			`promotions[0].rolling_tags[1]: "{{.Version}}" is already promotions[0].rolling_tags[0]`},
		{"negative scan timeout", func(p *config.Promotion, _ *[]config.Registry) { p.ScanTimeout = -time.Minute },
			"promotions[0].scan_timeout: must be a positive duration such as 10m, not -1m0s"},
		{"scan gate leaving a registry without Harbor's API", func(p *config.Promotion, _ *[]config.Registry) {
			p.Stages[1].Repository = "localhost:5000/wso2-staging/acme-am"
		}, "promotions[0].stages[2].gates.max_severity: needs Harbor's API to read its scans in localhost:5000/wso2-staging/acme-am, the stage the image leaves, but registries has no entry for localhost:5000 with harbor: true"},
		{"label gate leaving a registry without Harbor's API", func(p *config.Promotion, _ *[]config.Registry) {
			p.Stages[1].Repository = "localhost:5000/wso2-staging/acme-am"
		}, "promotions[0].stages[2].gates.labels: needs Harbor's API to read the artifact's labels in localhost:5000/wso2-staging/acme-am"},
		{"provenance without a base", func(p *config.Promotion, _ *[]config.Registry) {
			p.Stages[2].Gates.Provenance = &config.ProvenanceGate{}
		}, "promotions[0].stages[2].gates.provenance.base: must list at least one glob of the base's registry/repository, e.g. registry.wso2.com/**"},
		{"provenance with an empty base list", func(p *config.Promotion, _ *[]config.Registry) {
			p.Stages[2].Gates.Provenance = &config.ProvenanceGate{Base: []string{}}
		}, "promotions[0].stages[2].gates.provenance.base: must list at least one glob"},
		{"provenance base with a tag", func(p *config.Promotion, _ *[]config.Registry) {
			p.Stages[2].Gates.Provenance = &config.ProvenanceGate{Base: []string{"registry.wso2.com/**", "registry.wso2.com/wso2am:4.2.0"}}
		}, `promotions[0].stages[2].gates.provenance.base[1]: must be a glob of registry/repository without a tag or digest, e.g. registry.wso2.com/**, not "registry.wso2.com/wso2am:4.2.0"`},
		{"provenance base with a digest", func(p *config.Promotion, _ *[]config.Registry) {
			p.Stages[2].Gates.Provenance = &config.ProvenanceGate{Base: []string{"registry.wso2.com/wso2am@sha256:" + strings.Repeat("a", 64)}}
		}, "promotions[0].stages[2].gates.provenance.base[0]: must be a glob of registry/repository without a tag or digest"},
		{"provenance base without a registry", func(p *config.Promotion, _ *[]config.Registry) {
			p.Stages[2].Gates.Provenance = &config.ProvenanceGate{Base: []string{"**"}}
		}, `promotions[0].stages[2].gates.provenance.base[0]: must be a glob of registry/repository without a tag or digest, e.g. registry.wso2.com/**, not "**"`},
		{"provenance base empty", func(p *config.Promotion, _ *[]config.Registry) {
			p.Stages[2].Gates.Provenance = &config.ProvenanceGate{Base: []string{""}}
		}, `promotions[0].stages[2].gates.provenance.base[0]: must be a glob of registry/repository without a tag or digest, e.g. registry.wso2.com/**, not ""`},
		{"provenance base twice", func(p *config.Promotion, _ *[]config.Registry) {
			p.Stages[2].Gates.Provenance = &config.ProvenanceGate{Base: []string{"registry.wso2.com/**", "registry.wso2.com/**"}}
		}, `promotions[0].stages[2].gates.provenance.base[1]: "registry.wso2.com/**" is already promotions[0].stages[2].gates.provenance.base[0]`},
		{"provenance on the first stage", func(p *config.Promotion, _ *[]config.Registry) {
			p.Stages[0].Gates.Provenance = &config.ProvenanceGate{Base: []string{"registry.wso2.com/**"}}
		}, "promotions[0].stages[0].gates: must not be set on the first stage"},
		{"scan gate when the host is listed without harbor: true", func(_ *config.Promotion, regs *[]config.Registry) {
			*regs = []config.Registry{{Host: "harbor.acme.example"}}
		}, "promotions[0].stages[1].gates.max_severity: needs Harbor's API to read its scans in harbor.acme.example/wso2-dev/acme-am"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := chain()
			regs := append([]config.Registry(nil), harborRegistry...)
			tc.change(&p, &regs)
			_, err := config.ValidatePromotions([]config.Promotion{p}, regs)
			if err == nil {
				t.Fatalf("accepted; want %q", tc.want)
			}
			if !strings.Contains(err.Error(), "harborflow.yaml: "+tc.want) {
				t.Errorf("error = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestValidatePromotionsRefusesADuplicateChainName(t *testing.T) {
	second := chain()
	for i := range second.Stages {
		second.Stages[i].Repository += "-rocky"
	}
	_, err := config.ValidatePromotions([]config.Promotion{chain(), second}, harborRegistry)
	if want := `promotions[1].name: "acme-am" is already the name of promotions[0]`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v, want %q", err, want)
	}
}

func TestValidatePromotionsAcceptsGatesThatNeedNoHarborAnywhere(t *testing.T) {
	p := config.Promotion{Name: "oci", Stages: []config.PromotionStage{
		{Repository: "localhost:5000/dev/app"},
		{Repository: "localhost:5000/prod/app", Gates: config.Gates{Signed: true, MinAge: time.Hour, Approval: true,
			NonRoot: true, AllowedPorts: []string{}, Provenance: &config.ProvenanceGate{Base: []string{"registry.wso2.com/**", "localhost:5000/base/*"}}}},
	}}
	if _, err := config.ValidatePromotions([]config.Promotion{p}, nil); err != nil {
		t.Errorf("signed, provenance, min_age, approval, non_root and allowed_ports read the image, not Harbor: %v", err)
	}
}

func TestPromotionsLoadAndAreChecked(t *testing.T) {
	const file = `
registries:
  - host: harbor.acme.example
    harbor: true
promotions:
  - name: acme-am
    stages:
      - repository: harbor.acme.example/wso2-dev/acme-am
      - repository: harbor.acme.example/wso2-prod/acme-am
        gates: {max_severity: Low}
`
	cfg, err := config.Parse("h.yaml", []byte(file), env(nil))
	if err != nil {
		t.Fatalf("a valid promotions section: %v", err)
	}
	if len(cfg.Promotions) != 1 || cfg.Promotions[0].Stages[1].Name != "wso2-prod" || cfg.Promotions[0].ScanTimeout != config.DefaultScanTimeout {
		t.Errorf("promotions with defaults: %+v", cfg.Promotions)
	}
	// A scan gate on a stage left from a registry without Harbor's API is refused at load too.
	_, err = config.Parse("h.yaml", []byte(strings.Replace(file, "harbor: true", "harbor: false", 1)), env(nil))
	if err == nil || !strings.Contains(err.Error(), "max_severity: needs Harbor's API") {
		t.Errorf("error = %v, want the scan gate refused without Harbor's API", err)
	}
}
