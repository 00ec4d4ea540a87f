package registry

import "github.com/harborflow/harborflow/pkg/secret"

// Host is how the client reaches one registry host: its name as references spell it, credentials, TLS and
// how many requests may run at once. The zero value of every setting but Name is the safe default:
// anonymous, verified TLS against the system roots, DefaultMaxConcurrency.
type Host struct {
	// Name is host or host:port, as in references (harbor.acme.example, localhost:5000).
	Name string
	// Username and Password are the credentials; empty reads anonymously.
	Username string
	Password secret.Secret
	// CAFile is a PEM file of extra CA certificates trusted for this host, besides the system roots.
	CAFile string
	// Insecure turns TLS verification off.
	Insecure bool
	// PlainHTTP reaches the host over http://.
	PlainHTTP bool
	// MaxConcurrency bounds the requests at once to this host (0: DefaultMaxConcurrency).
	MaxConcurrency int
}
