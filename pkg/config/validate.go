package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/glob"
	"github.com/harborflow/harborflow/pkg/harbor"
	"github.com/harborflow/harborflow/pkg/imageref"
	"github.com/harborflow/harborflow/pkg/imagetag"
	"github.com/harborflow/harborflow/pkg/platform"
)

// validate checks every value that decoding cannot, and reports each problem with its key and line.
func (l *loader) validate(c *Config) error {
	l.errs = nil
	n := c.NATS
	if n.URL == "" {
		l.checkHostPort("nats.listen", n.Listen)
		if n.StoreDir == "" {
			l.fail("nats.store_dir", "must be set when nats.url is empty (the embedded server stores its streams there)")
		}
	}
	if n.Replicas < 1 || n.Replicas > 5 {
		l.fail("nats.replicas", fmt.Sprintf("must be between 1 and 5, not %d", n.Replicas))
	}
	if n.DuplicateWindow <= 0 {
		l.fail("nats.duplicate_window", "must be a positive duration such as 10m")
	}
	if n.MaxAge < 0 {
		l.fail("nats.max_age", "must not be negative (0 keeps messages for ever)")
	}
	if n.MaxAge > 0 && n.DuplicateWindow > n.MaxAge {
		l.fail("nats.duplicate_window", fmt.Sprintf("must not be longer than nats.max_age (%s)", n.MaxAge))
	}
	for _, f := range []struct{ key, file string }{{"nats.creds_file", n.CredsFile}, {"nats.ca_file", n.CAFile}} {
		if f.file == "" {
			continue
		}
		if _, err := os.Stat(f.file); err != nil {
			l.fail(f.key, fmt.Sprintf("cannot read %q: %v", f.file, errors.Unwrap(err)))
		}
	}
	if n.MaxBytes < 0 {
		l.fail("nats.max_bytes", "must not be negative (0 is unlimited)")
	}

	l.checkHostPort("http.listen", c.HTTP.Listen)
	if c.HTTP.MaxBodyBytes < 1024 {
		l.fail("http.max_body_bytes", fmt.Sprintf("must be at least 1024, not %d", c.HTTP.MaxBodyBytes))
	}
	if c.HTTP.PublishTimeout <= 0 {
		l.fail("http.publish_timeout", "must be a positive duration")
	}
	if c.HTTP.PublicURL != "" {
		if u, err := url.Parse(c.HTTP.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			l.fail("http.public_url", fmt.Sprintf("must be an http:// or https:// URL without credentials, such as https://harborflow.acme.example, not %q", c.HTTP.PublicURL))
		}
	}
	l.checkHostPort("ops.listen", c.Ops.Listen)
	if c.Ops.ShutdownGrace <= 0 {
		l.fail("ops.shutdown_grace", fmt.Sprintf("must be a positive duration such as 5s, not %s", c.Ops.ShutdownGrace))
	}
	if _, err := zapcore.ParseLevel(c.Log.Level); err != nil {
		l.fail("log.level", fmt.Sprintf("must be debug, info, warn or error, not %q", c.Log.Level))
	}

	seen := map[string]int{}
	for i, s := range c.Sources {
		key := fmt.Sprintf("sources[%d]", i)
		if !event.ValidSource(s.Name) {
			l.fail(key+".name", fmt.Sprintf("must match [a-z0-9-]+, not %q", s.Name))
		} else if j, dup := seen[s.Name]; dup {
			l.fail(key+".name", fmt.Sprintf("%q is already the name of sources[%d]", s.Name, j))
		}
		seen[s.Name] = i
		switch s.Kind {
		case SourceHarbor, SourceDistribution:
			if s.Host == "" {
				l.fail(key+".host", "must name the registry host the events are about, e.g. harbor.acme.example")
			}
			if len(s.Secrets) == 0 {
				l.fail(key+".secrets", "must list at least one Authorization header value (webhooks are not signed; this is their only authentication)")
			}
			for j, sec := range s.Secrets {
				if sec.Value() == "" {
					l.fail(fmt.Sprintf("%s.secrets[%d]", key, j), "must not be empty")
				}
			}
		case SourcePoll:
			if s.Interval <= 0 {
				l.fail(key+".interval", "must be a positive duration")
			}
			if s.Initial != "publish" && s.Initial != "baseline" {
				l.fail(key+".initial", fmt.Sprintf("must be publish or baseline, not %q", s.Initial))
			}
			if len(s.Repositories) == 0 {
				l.fail(key+".repositories", "must list at least one repository to poll")
			}
			for j, r := range s.Repositories {
				rk := fmt.Sprintf("%s.repositories[%d]", key, j)
				if _, err := imageref.ParseRepository(r.Repository); err != nil {
					l.fail(rk+".repository", fmt.Sprintf("must be registry/repository, e.g. registry.wso2.com/wso2-apim/am, not %q", r.Repository))
				}
				for k, p := range r.Tags {
					if _, err := regexp.Compile(p); err != nil {
						l.fail(fmt.Sprintf("%s.tags[%d]", rk, k), fmt.Sprintf("is not a valid regular expression: %v", err))
					}
				}
				l.checkPlatforms(rk+".platforms", r.Platforms)
			}
		default:
			l.fail(key+".kind", fmt.Sprintf("must be harbor, distribution or poll, not %q", s.Kind))
		}
	}

	if c.Inspector.UpdateLevelLabel == "" {
		l.fail("inspector.update_level_label", "must name the label that holds the update level")
	}
	for i, g := range c.Inspector.RequireUpdateLevel {
		if _, err := glob.Compile(g); err != nil {
			l.fail(fmt.Sprintf("inspector.require_update_level[%d]", i), err.Error())
		}
	}
	if c.Inspector.IndexWait < 0 {
		l.fail("inspector.index_wait", "must not be negative")
	}
	if c.Inspector.Concurrency < 1 || c.Inspector.Concurrency > 256 {
		l.fail("inspector.concurrency", fmt.Sprintf("must be between 1 and 256, not %d", c.Inspector.Concurrency))
	}

	l.validateRebuilds(c.Rebuilds)
	l.validatePromotions(c.Promotions, c.Registries)
	l.validateRetention(c.Retention, c.Registries)
	l.validateSigning(c.Signing)
	for i, p := range c.Promotions {
		for j, st := range p.Stages {
			if st.Gates.Signed && len(c.Signing.PublicKeys) == 0 {
				l.fail(fmt.Sprintf("promotions[%d].stages[%d].gates.signed", i, j),
					"needs signing.public_keys: the gate verifies signatures against them, it does not only look for one")
			}
			if st.Gates.Provenance != nil && len(c.Signing.PublicKeys) == 0 {
				l.fail(fmt.Sprintf("promotions[%d].stages[%d].gates.provenance", i, j),
					"needs signing.public_keys: the gate verifies the provenance attestation against them, it does not only look for one")
			}
		}
	}

	hosts := map[string]int{}
	for i, r := range c.Registries {
		key := fmt.Sprintf("registries[%d]", i)
		if r.Host == "" {
			l.fail(key+".host", "must be set")
		} else if j, dup := hosts[r.Host]; dup {
			l.fail(key+".host", fmt.Sprintf("%q is already configured in registries[%d]", r.Host, j))
		}
		hosts[r.Host] = i
		if r.MaxConcurrency < 0 {
			l.fail(key+".max_concurrency", "must not be negative")
		}
	}
	return errors.Join(l.errs...)
}

func (l *loader) checkHostPort(key, v string) {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		l.fail(key, fmt.Sprintf("must be host:port, not %q", v))
		return
	}
	_ = host
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		l.fail(key, fmt.Sprintf("port must be a number from 0 to 65535, not %q", port))
	}
}

var (
	recipeName = regexp.MustCompile(`^[a-z0-9-]+$`)
	owner      = regexp.MustCompile(`^\d+:\d+$`)
	stageName  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	port       = regexp.MustCompile(`^(\d{1,5})/(tcp|udp)$`)
)

// checkPlatforms fails each entry of list (at key) that is not an os/arch[/variant] platform.
func (l *loader) checkPlatforms(key string, list []string) {
	for i, p := range list {
		if _, _, _, err := platform.Parse(p); err != nil {
			l.fail(fmt.Sprintf("%s[%d]", key, i), fmt.Sprintf("must be os/arch[/variant], e.g. linux/amd64, not %q", p))
		}
	}
}

func (l *loader) validateRebuilds(rebuilds []Rebuild) {
	names := map[string]int{}
	for i, r := range rebuilds {
		key := fmt.Sprintf("rebuilds[%d]", i)
		if !recipeName.MatchString(r.Name) {
			l.fail(key+".name", fmt.Sprintf("must match [a-z0-9-]+, not %q", r.Name))
		} else if j, dup := names[r.Name]; dup {
			l.fail(key+".name", fmt.Sprintf("%q is already the name of rebuilds[%d]", r.Name, j))
		}
		names[r.Name] = i
		if base, err := imageref.ParseTagged(r.Base); err != nil {
			l.fail(key+".base", fmt.Sprintf("must be registry/repository:tag, e.g. registry.wso2.com/wso2-apim/am:4.2.0, not %q", r.Base))
		} else if _, err := imagetag.Parse(base.Tag); err != nil {
			l.fail(key+".base", fmt.Sprintf("tag %q of %s is not a version tag such as 4.2.0 or 4.2.0-rocky: the recipe follows a version line", base.Tag, base.Name()))
		}
		if _, err := imageref.ParseRepository(r.Target); err != nil {
			l.fail(key+".target", fmt.Sprintf("must be registry/repository without a tag, e.g. harbor.acme.example/wso2-dev/acme-am, not %q", r.Target))
		}
		if _, err := imagetag.ParseTemplate(r.Tag); err != nil {
			l.fail(key+".tag", err.Error())
		}
		if !owner.MatchString(r.Owner) {
			l.fail(key+".owner", fmt.Sprintf("must be uid:gid in numbers, e.g. 802:802, not %q", r.Owner))
		}
		l.checkPlatforms(key+".platforms", r.Platforms)
		if r.Timeout < 0 {
			l.fail(key+".timeout", "must be a positive duration")
		}
		switch r.Builder {
		case BuilderOverlay, BuilderDockerfile:
			l.checkDir(key+".context", r.Context)
			if r.Builder == BuilderDockerfile && r.Context != "" {
				if filepath.IsAbs(r.Dockerfile) || !filepath.IsLocal(r.Dockerfile) {
					l.fail(key+".dockerfile", fmt.Sprintf("must be a path inside the context, not %q", r.Dockerfile))
				} else if _, err := os.Stat(filepath.Join(r.Context, r.Dockerfile)); err != nil {
					l.fail(key+".dockerfile", fmt.Sprintf("cannot read %q: %v", filepath.Join(r.Context, r.Dockerfile), errors.Unwrap(err)))
				}
			}
		case BuilderRebase:
			if _, err := imageref.Parse(r.Image); err != nil {
				l.fail(key+".image", "must name the derived image to rebase, registry/repository:tag or @digest")
			}
		default:
			l.fail(key+".builder", fmt.Sprintf("must be overlay, dockerfile or rebase, not %q", r.Builder))
		}
	}
}

// checkDir fails key unless dir is a directory.
func (l *loader) checkDir(key, dir string) {
	if dir == "" {
		l.fail(key, "must name a directory")
		return
	}
	st, err := os.Stat(dir)
	switch {
	case err != nil:
		l.fail(key, fmt.Sprintf("cannot read %q: %v", dir, errors.Unwrap(err)))
	case !st.IsDir():
		l.fail(key, fmt.Sprintf("%q is not a directory", dir))
	}
}

// validatePromotions checks the promotions section against registries (which hosts have Harbor's API).
func (l *loader) validatePromotions(promotions []Promotion, registries []Registry) {
	harborHosts := map[string]bool{}
	for _, r := range registries {
		if r.Harbor {
			harborHosts[r.Host] = true
		}
	}
	names := map[string]int{}
	for i, p := range promotions {
		key := fmt.Sprintf("promotions[%d]", i)
		if !recipeName.MatchString(p.Name) {
			l.fail(key+".name", fmt.Sprintf("must match [a-z0-9-]+, not %q", p.Name))
		} else if j, dup := names[p.Name]; dup {
			l.fail(key+".name", fmt.Sprintf("%q is already the name of promotions[%d]", p.Name, j))
		}
		names[p.Name] = i
		if len(p.Stages) < 2 {
			l.fail(key+".stages", fmt.Sprintf("must list at least two stages (the one an image enters by a rebuild or a push, then where it is promoted to), not %d", len(p.Stages)))
		}
		stageNames, repos := map[string]int{}, map[string]int{}
		for j, st := range p.Stages {
			sk := fmt.Sprintf("%s.stages[%d]", key, j)
			ref, err := imageref.ParseRepository(st.Repository)
			if err != nil {
				l.fail(sk+".repository", fmt.Sprintf("must be registry/repository without a tag, e.g. harbor.acme.example/wso2-prod/acme-am, not %q", st.Repository))
			} else if k, dup := repos[ref.Name()]; dup {
				l.fail(sk+".repository", fmt.Sprintf("%s is already %s.stages[%d]: a chain visits a repository once", ref.Name(), key, k))
			} else {
				repos[ref.Name()] = j
			}
			switch k, dup := stageNames[st.Name]; {
			case !stageName.MatchString(st.Name):
				l.fail(sk+".name", fmt.Sprintf("must match [a-z0-9][a-z0-9._-]*, not %q", st.Name))
			case dup:
				l.fail(sk+".name", fmt.Sprintf("%q is already the name of %s.stages[%d]: set name on one of them", st.Name, key, k))
			default:
				stageNames[st.Name] = j
			}
			if j == 0 {
				if st.Gates.set() {
					l.fail(sk+".gates", "must not be set on the first stage: an image enters it by a rebuild or a push, so nothing would check them; gates go on the stage they guard the entry to")
				}
				continue
			}
			l.validateGates(sk+".gates", st.Gates, p.Stages[j-1].Repository, harborHosts)
		}
		templates := map[string]int{}
		for j, t := range p.RollingTags {
			tk := fmt.Sprintf("%s.rolling_tags[%d]", key, j)
			if _, err := imagetag.ParseTemplate(t); err != nil {
				l.fail(tk, err.Error())
			} else if k, dup := templates[t]; dup {
				l.fail(tk, fmt.Sprintf("%q is already %s.rolling_tags[%d]", t, key, k))
			}
			templates[t] = j
		}
		if p.ScanTimeout <= 0 {
			l.fail(key+".scan_timeout", fmt.Sprintf("must be a positive duration such as 10m, not %s", p.ScanTimeout))
		}
	}
}

// validateRetention checks the retention policies: each repository glob names a registry with Harbor's API.
func (l *loader) validateRetention(policies []Retention, registries []Registry) {
	for i, p := range policies {
		key := fmt.Sprintf("retention[%d]", i)
		if len(p.Repositories) == 0 {
			l.fail(key+".repositories", "must list at least one repository glob, e.g. harbor.acme.example/wso2-*/acme-am")
		}
		for j, r := range p.Repositories {
			rk := fmt.Sprintf("%s.repositories[%d]", key, j)
			host, rest, _ := strings.Cut(r, "/")
			if _, err := glob.Compile(r); err != nil || rest == "" || strings.ContainsAny(host, "*?") {
				l.fail(rk, fmt.Sprintf("must be a glob of registry/project/repository with a literal registry, not %q", r))
				continue
			}
			if !slices.ContainsFunc(registries, func(reg Registry) bool { return reg.Host == host && reg.Harbor }) {
				l.fail(rk, fmt.Sprintf("needs Harbor's API to read and delete artifacts in %s, but registries has no entry for %s with harbor: true", host, host))
			}
		}
		if p.KeepPerVersion < 1 {
			l.fail(key+".keep_per_version", fmt.Sprintf("must be at least 1, not %d", p.KeepPerVersion))
		}
		for j, pat := range p.Protect {
			if _, err := regexp.Compile(pat); err != nil {
				l.fail(fmt.Sprintf("%s.protect[%d]", key, j), fmt.Sprintf("must be a regular expression: %v", err))
			}
		}
		if p.MinAge < 0 {
			l.fail(key+".min_age", fmt.Sprintf("must not be negative, not %s", p.MinAge))
		}
		if p.Schedule != 0 && p.Schedule < time.Minute {
			l.fail(key+".schedule", fmt.Sprintf("must be at least 1m, or 0 to turn the schedule off, not %s", p.Schedule))
		}
	}
}

// validateSigning checks that the signing key and the public keys are files that can be read (their contents
// are checked by the stage that loads them, which can say whether a password is wrong).
func (l *loader) validateSigning(sg Signing) {
	switch {
	case sg.Key == "" && sg.Password != "":
		l.fail("signing.password", "is set, but signing.key is not: there is nothing to decrypt")
	case sg.Key != "":
		if _, err := os.Stat(sg.Key); err != nil {
			l.fail("signing.key", fmt.Sprintf("cannot read %q: %v", sg.Key, errors.Unwrap(err)))
		}
	}
	// A promoter verifies with the public keys alone: they are checked with or without a key to sign with.
	for i, pk := range sg.PublicKeys {
		key := fmt.Sprintf("signing.public_keys[%d]", i)
		if pk == "" {
			l.fail(key, "must name a PEM public key file")
		} else if _, err := os.Stat(pk); err != nil {
			l.fail(key, fmt.Sprintf("cannot read %q: %v", pk, errors.Unwrap(err)))
		}
	}
}

// maxSeverities are the max_severity values: Unknown and Negligible are ordered by Harbor but are not a
// threshold anyone means.
var maxSeverities = []harbor.Severity{harbor.SeverityNone, harbor.SeverityLow, harbor.SeverityMedium, harbor.SeverityHigh, harbor.SeverityCritical}

// validateGates checks the gates at key of a stage entered from the repository from; a gate that reads
// Harbor's API reads it there, so from's registry must be a Harbor.
func (l *loader) validateGates(key string, g Gates, from string, harborHosts map[string]bool) {
	if g.MaxSeverity != "" {
		if s, err := harbor.ParseSeverity(g.MaxSeverity); err != nil || !slices.Contains(maxSeverities, s) {
			l.fail(key+".max_severity", fmt.Sprintf("must be None, Low, Medium, High or Critical, not %q", g.MaxSeverity))
		}
	}
	seen := map[string]int{}
	for i, lb := range g.Labels {
		lk := fmt.Sprintf("%s.labels[%d]", key, i)
		if lb == "" {
			l.fail(lk, "must name a Harbor label")
		} else if j, dup := seen[lb]; dup {
			l.fail(lk, fmt.Sprintf("%q is already %s.labels[%d]", lb, key, j))
		}
		seen[lb] = i
	}
	if g.MinAge < 0 {
		l.fail(key+".min_age", fmt.Sprintf("must not be negative, not %s", g.MinAge))
	}
	seen = map[string]int{}
	for i, p := range g.AllowedPorts {
		pk := fmt.Sprintf("%s.allowed_ports[%d]", key, i)
		n := 0
		if m := port.FindStringSubmatch(p); m != nil {
			n, _ = strconv.Atoi(m[1])
		}
		if n < 1 || n > 65535 {
			l.fail(pk, fmt.Sprintf("must be PORT/tcp or PORT/udp with PORT from 1 to 65535, e.g. 9443/tcp, not %q", p))
		} else if j, dup := seen[p]; dup {
			l.fail(pk, fmt.Sprintf("%q is already %s.allowed_ports[%d]", p, key, j))
		}
		seen[p] = i
	}
	if g.Provenance != nil {
		l.validateProvenanceGate(key+".provenance", *g.Provenance)
	}
	ref, err := imageref.ParseRepository(from)
	if err != nil || harborHosts[ref.Registry] {
		return // a bad repository is reported at its own key
	}
	for _, gate := range []struct {
		key  string
		set  bool
		what string
	}{{"max_severity", g.MaxSeverity != "", "its scans"}, {"labels", len(g.Labels) > 0, "the artifact's labels"}} {
		if gate.set {
			l.fail(key+"."+gate.key, fmt.Sprintf("needs Harbor's API to read %s in %s, the stage the image leaves, but registries has no entry for %s with harbor: true", gate.what, ref.Name(), ref.Registry))
		}
	}
}

// validateProvenanceGate checks the provenance gate at key: at least one glob of registry/repository, each
// once. A glob with a tag or a digest, or without a registry, would never match a base's repository.
func (l *loader) validateProvenanceGate(key string, g ProvenanceGate) {
	if len(g.Base) == 0 {
		l.fail(key+".base", "must list at least one glob of the base's registry/repository, e.g. registry.wso2.com/**")
		return
	}
	seen := map[string]int{}
	for i, b := range g.Base {
		bk := fmt.Sprintf("%s.base[%d]", key, i)
		host, rest, _ := strings.Cut(b, "/")
		_, err := glob.Compile(b)
		switch {
		case err != nil || host == "" || rest == "" || strings.Contains(rest, ":") || strings.Contains(b, "@"):
			l.fail(bk, fmt.Sprintf("must be a glob of registry/repository without a tag or digest, e.g. registry.wso2.com/**, not %q", b))
		default:
			if j, dup := seen[b]; dup {
				l.fail(bk, fmt.Sprintf("%q is already %s.base[%d]", b, key, j))
			}
		}
		seen[b] = i
	}
}

// set reports whether any gate is set.
func (g Gates) set() bool {
	return g.MaxSeverity != "" || g.Signed || g.Provenance != nil || g.Labels != nil || g.MinAge != 0 || g.Approval || g.NonRoot ||
		g.AllowedPorts != nil
}
