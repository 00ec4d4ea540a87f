package harbor

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/harborflow/harborflow/pkg/secret"
)

// apiPath is the base path of Harbor's API v2.0.
const apiPath = "/api/v2.0"

// Host is how the client reaches one Harbor: its address, an account, and TLS. The zero value of every
// setting but Name is the safe default: anonymous, over TLS verified against the system roots.
type Host struct {
	// Name is Harbor's host or host:port as registry references spell it (harbor.acme.example), or a URL
	// (https://harbor.acme.example, https://harbor.acme.example/api/v2.0/).
	Name string
	// Username and Password are the account (a user, or a robot account robot$…); empty is anonymous.
	Username string
	Password secret.Secret
	// CAFile is a PEM file of extra CA certificates trusted for this host, besides the system roots.
	CAFile string
	// Insecure turns TLS verification off.
	Insecure bool
	// PlainHTTP reaches Harbor over http://.
	PlainHTTP bool
}

// BaseURL is the URL of h's API: https://<host>/api/v2.0, or http:// with PlainHTTP, without a trailing
// slash. A path Name gives before /api/v2.0 (Harbor behind a path prefix) is kept.
func BaseURL(h Host) (*url.URL, error) {
	name := strings.TrimSpace(h.Name)
	if name == "" {
		return nil, fmt.Errorf("harbor host: %w: empty name", ErrInvalidHost)
	}
	scheme := "https"
	if h.PlainHTTP {
		scheme = "http"
	}
	if !strings.Contains(name, "://") {
		name = scheme + "://" + name
	}
	u, err := url.Parse(name)
	if err != nil {
		return nil, fmt.Errorf("harbor host %q: %w: %w", h.Name, ErrInvalidHost, err)
	}
	switch {
	case u.User != nil:
		// Never echo the URL: it holds a password.
		return nil, fmt.Errorf("harbor host %s: %w: credentials belong in username and password, not the URL", u.Redacted(), ErrInvalidHost)
	case u.Host == "":
		return nil, fmt.Errorf("harbor host %q: %w: no host", h.Name, ErrInvalidHost)
	case u.Scheme != scheme:
		return nil, fmt.Errorf("harbor host %q: %w: scheme %s, but plain_http is %t", h.Name, ErrInvalidHost, u.Scheme, h.PlainHTTP)
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("harbor host %q: %w: a query or fragment", h.Name, ErrInvalidHost)
	}
	p := strings.TrimRight(u.Path, "/")
	p = strings.TrimSuffix(p, apiPath)
	return &url.URL{Scheme: scheme, Host: u.Host, Path: p + apiPath}, nil
}
