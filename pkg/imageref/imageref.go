// Package imageref parses the image references harborflow reads and writes, registry/repository[:tag][@digest],
// with regclient's types/ref underneath, and answers the small questions asked of them: the repository of a
// reference, its host, its project.
//
// A reference always names its registry: the part before the first slash must contain a dot or a colon, or be
// localhost (the rule docker applies). Docker Hub images are written in full (docker.io/library/alpine:3).
package imageref

import (
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/ref"
)

// ErrInvalid is matched by every parse error.
var ErrInvalid = errors.New("invalid reference")

// Ref is a parsed registry/repository[:tag][@digest]. Tag and Digest are what the text gave (empty when it
// gave none).
type Ref struct {
	// Registry is the host, with its port when the reference has one (harbor.acme.example, localhost:5000).
	Registry string
	// Repository is the path within the registry (wso2-apim/am).
	Repository string
	Tag        string
	Digest     string
}

// Parse parses registry/repository[:tag][@digest].
func Parse(s string) (Ref, error) {
	if r, ok := fast(s); ok {
		return r, nil
	}
	if !explicitRegistry(s) {
		return Ref{}, fmt.Errorf("%w %q: want registry/repository[:tag][@digest], naming the registry host", ErrInvalid, s)
	}
	rr, err := ref.New(s)
	if err != nil || rr.Scheme != "reg" {
		return Ref{}, fmt.Errorf("%w %q: want registry/repository[:tag][@digest]", ErrInvalid, s)
	}
	if rr.Digest != "" {
		if _, err := digest.Parse(rr.Digest); err != nil {
			return Ref{}, fmt.Errorf("%w %q: %v", ErrInvalid, s, err)
		}
	}
	r := Ref{Registry: rr.Registry, Repository: rr.Repository, Digest: rr.Digest}
	if hasTag(s) {
		r.Tag = rr.Tag
	}
	return r, nil
}

// ParseRepository parses registry/repository, refusing a tag or a digest.
func ParseRepository(s string) (Ref, error) {
	r, err := Parse(s)
	if err != nil {
		return Ref{}, fmt.Errorf("%w %q: want registry/repository", ErrInvalid, s)
	}
	if r.Tag != "" || r.Digest != "" {
		return Ref{}, fmt.Errorf("%w %q: want registry/repository, without tag or digest", ErrInvalid, s)
	}
	return r, nil
}

// ParseTagged parses registry/repository:tag, refusing a reference without a tag or with a digest.
func ParseTagged(s string) (Ref, error) {
	r, err := Parse(s)
	if err != nil {
		return Ref{}, err
	}
	if r.Tag == "" || r.Digest != "" {
		return Ref{}, fmt.Errorf("%w %q: want registry/repository:tag, without a digest", ErrInvalid, s)
	}
	return r, nil
}

// Name is registry/repository: the repository of the reference, without tag or digest.
func (r Ref) Name() string { return r.Registry + "/" + r.Repository }

// String is registry/repository[:tag][@digest].
func (r Ref) String() string {
	s := r.Name()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// Project is the first path segment of the repository: the project (Harbor) or namespace.
func (r Ref) Project() string { return Project(r.Repository) }

// Project is the first path segment of a repository path (wso2-apim of wso2-apim/am).
func Project(repository string) string {
	p, _, _ := strings.Cut(repository, "/")
	return p
}

// RegClient is r as regclient names it. A reference with neither tag nor digest names tag latest, as docker
// does.
func (r Ref) RegClient() ref.Ref {
	rr := ref.Ref{Scheme: "reg", Registry: r.Registry, Repository: r.Repository, Tag: r.Tag, Digest: r.Digest}
	if rr.Tag == "" && rr.Digest == "" {
		rr.Tag = "latest"
	}
	rr.Reference = rr.CommonName()
	return rr
}

// IsDigest reports whether s is an OCI digest (image-spec descriptor.md): algorithm
// [a-z0-9]+([+._-][a-z0-9]+)* ":" encoded [a-zA-Z0-9=_-]+. The registered algorithms are checked strictly
// (sha256: 64, sha512: 128 lower-case hex characters); other algorithms need an encoded part of 32 or more
// characters, so a tag can never pass (a tag cannot contain ':' anyway).
func IsDigest(s string) bool {
	alg, enc, ok := strings.Cut(s, ":")
	if !ok || alg == "" || enc == "" {
		return false
	}
	switch alg {
	case "sha256":
		return len(enc) == 64 && isLowerHex(enc)
	case "sha512":
		return len(enc) == 128 && isLowerHex(enc)
	}
	if len(enc) < 32 {
		return false
	}
	// algorithm-component (algorithm-separator algorithm-component)*
	prevSep := true
	for j := 0; j < len(alg); j++ {
		c := alg[j]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			prevSep = false
		case c == '+' || c == '.' || c == '_' || c == '-':
			if prevSep {
				return false
			}
			prevSep = true
		default:
			return false
		}
	}
	if prevSep {
		return false
	}
	for j := 0; j < len(enc); j++ {
		c := enc[j]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '=' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// explicitRegistry reports whether s starts with a registry host: a first segment, before a slash, with a dot
// or a colon, or localhost.
func explicitRegistry(s string) bool {
	host, _, ok := strings.Cut(s, "/")
	return ok && (strings.ContainsAny(host, ".:") || host == "localhost")
}

// hasTag reports whether the text of a reference gives a tag: a colon in its last path segment, before any
// digest.
func hasTag(s string) bool {
	name, _, _ := strings.Cut(s, "@")
	return strings.Contains(name[strings.LastIndexByte(name, '/')+1:], ":")
}

// fast parses the references harborflow makes, host/repository[:tag][@sha256:<hex>] with a host that is not
// Docker Hub, without regclient's regular expressions (a sixth of an inspection's CPU). Anything else is left
// to ref.New.
func fast(s string) (Ref, bool) {
	name, dig, hasDig := strings.Cut(s, "@")
	if hasDig && !validDigest(dig) {
		return Ref{}, false
	}
	host, rest, ok := strings.Cut(name, "/")
	if !ok || !validHost(host) {
		return Ref{}, false
	}
	repo, tag := rest, ""
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		repo, tag = rest[:i], rest[i+1:]
		if !IsTag(tag) {
			return Ref{}, false
		}
	}
	if !validRepository(repo) {
		return Ref{}, false
	}
	return Ref{Registry: host, Repository: repo, Tag: tag, Digest: dig}, true
}

func validDigest(d string) bool {
	alg, hex, ok := strings.Cut(d, ":")
	if !ok || (alg != "sha256" || len(hex) != 64) && (alg != "sha512" || len(hex) != 128) {
		return false
	}
	return isLowerHex(hex)
}

// validHost accepts a host name or IPv4 address with an optional port that names a registry (it has a dot
// or a port, or is localhost) other than Docker Hub, whose names ref.New rewrites.
func validHost(h string) bool {
	switch h {
	case "", "docker.io", "index.docker.io", "registry-1.docker.io":
		return false
	case "localhost":
		return true
	}
	if !strings.ContainsAny(h, ".:") {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !isAlnum(c) && c != '.' && c != '-' && c != ':' && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// IsTag reports whether t is a valid tag: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
func IsTag(t string) bool {
	if t == "" || len(t) > 128 || t[0] == '.' || t[0] == '-' {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !isAlnum(c) && (c < 'A' || c > 'Z') && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

// validRepository checks the distribution spec's path components: [a-z0-9]+ joined by ".", "_", "__" or
// runs of "-", separated by "/".
func validRepository(repo string) bool {
	if repo == "" || len(repo) > 255 {
		return false
	}
	for comp := range strings.SplitSeq(repo, "/") {
		if comp == "" || !isAlnum(comp[0]) || !isAlnum(comp[len(comp)-1]) {
			return false
		}
		for i := 1; i < len(comp)-1; i++ {
			c := comp[i]
			switch {
			case isAlnum(c), c == '-':
			case c == '.' || c == '_':
				next := comp[i+1]
				if c == '_' && next == '_' && i+2 < len(comp) && isAlnum(comp[i+2]) {
					i++ // "__"
					continue
				}
				if !isAlnum(next) {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}
