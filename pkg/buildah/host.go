package buildah

import "github.com/harborflow/harborflow/pkg/secret"

// Host is how buildah reaches one registry host: its name as references spell it, credentials and TLS. The
// zero value of every setting but Name is the safe default: anonymous, verified TLS against the system roots.
type Host struct {
	// Name is host or host:port, as in references (harbor.acme.example, localhost:5000).
	Name string
	// Username and Password are the credentials; empty pulls and pushes anonymously.
	Username string
	Password secret.Secret
	// CAFile is a PEM file of extra CA certificates trusted for this host.
	CAFile string
	// Insecure turns TLS verification off; PlainHTTP reaches the host over http://.
	Insecure  bool
	PlainHTTP bool
}
