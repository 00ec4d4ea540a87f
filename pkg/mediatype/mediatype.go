// Package mediatype names the media types of OCI and Docker images that harborflow tells apart: which are
// manifests, which of those are indexes, and which are blobs (layers and image configs).
package mediatype

import "strings"

// Manifest media types.
const (
	OCIIndex        = "application/vnd.oci.image.index.v1+json"
	OCIManifest     = "application/vnd.oci.image.manifest.v1+json"
	OCIArtifact     = "application/vnd.oci.artifact.manifest.v1+json"
	DockerList      = "application/vnd.docker.distribution.manifest.list.v2+json"
	DockerManifest  = "application/vnd.docker.distribution.manifest.v2+json"
	Docker1Manifest = "application/vnd.docker.distribution.manifest.v1+json"
	Docker1Signed   = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	OCIConfig       = "application/vnd.oci.image.config.v1+json"
	DockerConfig    = "application/vnd.docker.container.image.v1+json"
	OCILayer        = "application/vnd.oci.image.layer.v1.tar"
	OCILayerGzip    = "application/vnd.oci.image.layer.v1.tar+gzip"
	OCILayerZstd    = "application/vnd.oci.image.layer.v1.tar+zstd"
	DockerLayer     = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	DockerForeign   = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	OCINonDistLayer = "application/vnd.oci.image.layer.nondistributable.v1.tar"
	OCINonDistGzip  = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
	OCINonDistZstd  = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
)

var (
	manifests = map[string]bool{
		OCIIndex: true, OCIManifest: true, OCIArtifact: true,
		DockerList: true, DockerManifest: true, Docker1Manifest: true, Docker1Signed: true,
	}
	blobs = map[string]bool{
		OCIConfig: true, DockerConfig: true,
		OCILayer: true, OCILayerGzip: true, OCILayerZstd: true, DockerLayer: true, DockerForeign: true,
		OCINonDistLayer: true, OCINonDistGzip: true, OCINonDistZstd: true,
	}
)

// Normalize returns the media type of a Content-Type style value: without parameters, trimmed, lower case.
func Normalize(mt string) string {
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	return strings.ToLower(strings.TrimSpace(mt))
}

// IsIndex reports whether mt is an OCI image index or a Docker manifest list.
func IsIndex(mt string) bool {
	mt = Normalize(mt)
	return mt == OCIIndex || mt == DockerList
}

// IsManifest reports whether mt is a known manifest media type (indexes included).
func IsManifest(mt string) bool { return manifests[Normalize(mt)] }

// IsBlob reports whether mt is a known blob media type: an image config or a layer.
func IsBlob(mt string) bool { return blobs[Normalize(mt)] }
