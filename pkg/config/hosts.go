package config

import (
	"github.com/harborflow/harborflow/pkg/buildah"
	"github.com/harborflow/harborflow/pkg/harbor"
	"github.com/harborflow/harborflow/pkg/registry"
)

// RegistryHost is the registry client's settings for this registries: entry.
func (r Registry) RegistryHost() registry.Host {
	return registry.Host{Name: r.Host, Username: r.Username, Password: r.Password, CAFile: r.CAFile,
		Insecure: r.Insecure, PlainHTTP: r.PlainHTTP, MaxConcurrency: r.MaxConcurrency}
}

// BuildahHost is buildah's settings for this registries: entry.
func (r Registry) BuildahHost() buildah.Host {
	return buildah.Host{Name: r.Host, Username: r.Username, Password: r.Password, CAFile: r.CAFile,
		Insecure: r.Insecure, PlainHTTP: r.PlainHTTP}
}

// RegistryHosts are the registry client's settings for every registries: entry.
func RegistryHosts(regs []Registry) []registry.Host {
	out := make([]registry.Host, len(regs))
	for i, r := range regs {
		out[i] = r.RegistryHost()
	}
	return out
}

// BuildahHosts are buildah's settings for every registries: entry.
func BuildahHosts(regs []Registry) []buildah.Host {
	out := make([]buildah.Host, len(regs))
	for i, r := range regs {
		out[i] = r.BuildahHost()
	}
	return out
}

// HarborHost is the Harbor API client's settings for this registries: entry: the registry's own account and
// TLS settings, for an entry with harbor: true.
func (r Registry) HarborHost() harbor.Host {
	return harbor.Host{Name: r.Host, Username: r.Username, Password: r.Password, CAFile: r.CAFile,
		Insecure: r.Insecure, PlainHTTP: r.PlainHTTP}
}

// HarborHosts are the Harbor API client's settings for every registries: entry with harbor: true.
func HarborHosts(regs []Registry) []harbor.Host {
	var out []harbor.Host
	for _, r := range regs {
		if r.Harbor {
			out = append(out, r.HarborHost())
		}
	}
	return out
}
