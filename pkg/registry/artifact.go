package registry

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/docker/schema2"
	"github.com/regclient/regclient/types/manifest"
	v1 "github.com/regclient/regclient/types/oci/v1"

	"github.com/harborflow/harborflow/pkg/mediatype"
	"github.com/harborflow/harborflow/pkg/platform"
)

// Kind is what an artifact is, for the stages that act on images.
type Kind string

// Kinds.
const (
	// KindImage is a runnable single-platform image: an image manifest with an image config.
	KindImage Kind = "image"
	// KindIndex is an OCI index or a Docker manifest list: a multi-platform image.
	KindIndex Kind = "index"
	// KindAccessory is anything else: it belongs to an image (a signature, an attestation, an SBOM, any
	// referrer) or is not an image at all (a Helm chart, a file bundle). Stages skip accessories.
	KindAccessory Kind = "accessory"
)

// Accessory says what an accessory is.
type Accessory string

// Accessories.
const (
	// AccessorySignature is a cosign signature (tag sha256-<hex>.sig, simple-signing layer, a sigstore bundle
	// of a signature) or a Notary v2 signature.
	AccessorySignature Accessory = "signature"
	// AccessoryAttestation is a cosign attestation (tag sha256-<hex>.att, DSSE envelope layer, a sigstore
	// bundle with a predicate) or an in-toto attestation, including the attestation manifests buildx puts in
	// an index.
	AccessoryAttestation Accessory = "attestation"
	// AccessorySBOM is an SBOM: tag sha256-<hex>.sbom, or SPDX, CycloneDX, Syft or Harbor SBOM content.
	AccessorySBOM Accessory = "sbom"
	// AccessoryReferrer is any other manifest with a subject.
	AccessoryReferrer Accessory = "referrer"
	// AccessoryArtifact is a manifest without a subject that is not an image either: its config is not an
	// image config or it declares an artifactType (a Helm chart, an ORAS file bundle, a build cache).
	AccessoryArtifact Accessory = "artifact"
)

// Descriptor is what a HEAD of a manifest tells: its digest, media type and size.
type Descriptor struct {
	Digest    string
	MediaType string
	Size      int64
}

// Artifact is what a manifest is, and for images and indexes what each platform carries.
type Artifact struct {
	// Registry is the registry host, Repository the repository path within it.
	Registry   string
	Repository string
	// Tag is the tag the artifact was asked for by, if any.
	Tag string
	// Digest, MediaType and Size describe the manifest.
	Digest    string
	MediaType string
	Size      int64
	// Kind is image, index or accessory; Accessory says which accessory when Kind is KindAccessory.
	Kind      Kind
	Accessory Accessory
	// Subject is the digest an accessory belongs to: the manifest's subject, or the digest a cosign tag
	// (sha256-<hex>.sig) names. Empty when unknown.
	Subject string
	// ArtifactType is the manifest's artifactType, if it has one.
	ArtifactType string
	// Platforms is one entry for an image and one per platform for an index, in index order. Attestation
	// manifests and nested indexes inside an index are not platforms. For an index read with Manifest
	// rather than Inspect, entries carry only what the index says (platform and digest, no labels); for an
	// image read with Manifest, Platforms is empty (the platform is in the config).
	Platforms []Platform
	// Labels are an image's config labels. For an index they are the labels every platform has with the
	// same value; a label whose value differs between platforms is only in Platforms.
	Labels map[string]string
	// Annotations are the manifest's own annotations (for an index, the index's).
	Annotations map[string]string
}

// Ref returns registry/repository@digest.
func (a *Artifact) Ref() string { return a.Registry + "/" + a.Repository + "@" + a.Digest }

// Platform is one platform of an image: what its image config says.
type Platform struct {
	OS           string
	Architecture string
	Variant      string
	// Digest is the platform's image manifest; for a single-platform image, the image's own digest.
	Digest string
	// Created is the config's creation time, zero when absent.
	Created time.Time
	// User is the user the image runs as (config User).
	User string
	// ExposedPorts are the config's exposed ports, such as "9443/tcp", sorted.
	ExposedPorts []string
	// Labels are the config labels.
	Labels map[string]string
	// Annotations are the platform manifest's annotations over the index descriptor's.
	Annotations map[string]string
}

// UpdateLevel reads a WSO2-style update level from the config label named label: the image's (of every
// platform of an index, which must agree), or else the manifest annotation of that name. An empty, negative or
// non-numeric value is no update level.
func (art *Artifact) UpdateLevel(label string) (int64, bool) {
	var values []string
	if v, ok := art.Labels[label]; ok {
		values = append(values, v)
	}
	for _, p := range art.Platforms {
		if v, ok := p.Labels[label]; ok {
			values = append(values, v)
		}
	}
	if len(values) == 0 {
		if v, ok := art.Annotations[label]; ok {
			values = append(values, v)
		}
	}
	if len(values) == 0 {
		return 0, false
	}
	for _, v := range values[1:] {
		if v != values[0] {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(values[0]), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// String returns os/architecture[/variant].
func (p Platform) String() string { return platform.Format(p.OS, p.Architecture, p.Variant) }

// Media types the classification knows.
const (
	mtOCIIndex          = mediatype.OCIIndex
	mtDockerList        = mediatype.DockerList
	mtOCIManifest       = mediatype.OCIManifest
	mtDockerManifest    = mediatype.DockerManifest
	mtDocker1Manifest   = mediatype.Docker1Manifest
	mtDocker1Signed     = mediatype.Docker1Signed
	mtOCIConfig         = mediatype.OCIConfig
	mtDockerConfig      = mediatype.DockerConfig
	mtCosignSimpleSign  = "application/vnd.dev.cosign.simplesigning.v1+json"
	mtDSSE              = "application/vnd.dsse.envelope.v1+json"
	mtInToto            = "application/vnd.in-toto+json"
	mtSigstoreBundle    = "application/vnd.dev.sigstore.bundle" // followed by .v0.3+json etc.
	mtNotarySignature   = "application/vnd.cncf.notary.signature"
	annotSigstorePred   = "dev.sigstore.bundle.predicateType"
	sigstoreSignPred    = "https://sigstore.dev/cosign/sign/v1"
	annotDockerRefType  = "vnd.docker.reference.type"
	dockerAttestManifst = "attestation-manifest"
)

// The annotations of the OCI image spec that name an image's base: what Edit.BaseName and BaseDigest write,
// what Rebase reads, what `regctl image check-base` checks.
const (
	AnnotationBaseName   = "org.opencontainers.image.base.name"
	AnnotationBaseDigest = "org.opencontainers.image.base.digest"
)

// sbomTypes are the media types (artifactType, config or layer) of SBOM content.
var sbomTypes = map[string]bool{
	"application/spdx+json":                   true,
	"application/spdx":                        true,
	"text/spdx":                               true,
	"text/spdx+json":                          true,
	"text/spdx+xml":                           true,
	"application/vnd.cyclonedx":               true,
	"application/vnd.cyclonedx+json":          true,
	"application/vnd.cyclonedx+xml":           true,
	"application/vnd.syft+json":               true,
	"application/vnd.goharbor.harbor.sbom.v1": true,
}

// cosignTag is cosign's tag scheme for the accessories of <alg>:<hex>.
var cosignTag = regexp.MustCompile(`^(sha256|sha512)-([0-9a-f]{64}|[0-9a-f]{128})\.(sig|att|sbom)$`)

// TagAccessory reports whether tag follows cosign's tag scheme, sha256-<hex>.sig, .att or .sbom: which
// accessory it names and the digest of the image it belongs to. It needs no request, so a stage can skip such
// tags before asking the registry anything.
func TagAccessory(tag string) (acc Accessory, subject string, ok bool) {
	if !strings.HasPrefix(tag, "sha") {
		return "", "", false
	}
	m := cosignTag.FindStringSubmatch(tag)
	if m == nil {
		return "", "", false
	}
	switch m[3] {
	case "sig":
		acc = AccessorySignature
	case "att":
		acc = AccessoryAttestation
	default:
		acc = AccessorySBOM
	}
	return acc, m[1] + ":" + m[2], true
}

// descJSON is a descriptor: what classification uses of one.
type descJSON struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Platform     *platformJSON     `json:"platform,omitempty"`
}

type platformJSON struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

// manifestJSON holds the fields of every manifest kind (OCI and Docker, image and index) classification
// needs, filled from regclient's types or, for Docker schema 1, decoded from the body.
type manifestJSON struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType,omitempty"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        *descJSON         `json:"config,omitempty"`
	Layers        []descJSON        `json:"layers,omitempty"`
	Manifests     []descJSON        `json:"manifests,omitempty"`
	Subject       *descJSON         `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// manifestFields takes the fields classification needs from a manifest regclient has read and decoded.
func manifestFields(m manifest.Manifest) (manifestJSON, error) {
	switch o := m.GetOrig().(type) {
	case v1.Manifest:
		return manifestJSON{SchemaVersion: o.SchemaVersion, MediaType: o.MediaType, ArtifactType: o.ArtifactType,
			Config: configDesc(o.Config), Layers: descs(o.Layers), Subject: descPtr(o.Subject), Annotations: o.Annotations}, nil
	case v1.Index:
		return manifestJSON{SchemaVersion: o.SchemaVersion, MediaType: o.MediaType, ArtifactType: o.ArtifactType,
			Manifests: descs(o.Manifests), Subject: descPtr(o.Subject), Annotations: o.Annotations}, nil
	case schema2.Manifest:
		return manifestJSON{SchemaVersion: o.SchemaVersion, MediaType: o.MediaType,
			Config: configDesc(o.Config), Layers: descs(o.Layers), Annotations: o.Annotations}, nil
	case schema2.ManifestList:
		return manifestJSON{SchemaVersion: o.SchemaVersion, MediaType: o.MediaType,
			Manifests: descs(o.Manifests), Annotations: o.Annotations}, nil
	case v1.ArtifactManifest:
		return manifestJSON{SchemaVersion: 2, MediaType: o.MediaType, ArtifactType: o.ArtifactType,
			Layers: descs(o.Blobs), Subject: descPtr(o.Subject), Annotations: o.Annotations}, nil
	}
	// Docker schema 1, and whatever regclient learns to read later.
	var mj manifestJSON
	raw, err := m.RawBody()
	if err == nil {
		err = json.Unmarshal(raw, &mj)
	}
	if err != nil {
		return manifestJSON{}, fmt.Errorf("decoding manifest: %w", err)
	}
	return mj, nil
}

func descOf(d descriptor.Descriptor) descJSON {
	out := descJSON{MediaType: d.MediaType, Digest: d.Digest.String(), Size: d.Size, ArtifactType: d.ArtifactType,
		Annotations: d.Annotations}
	if d.Platform != nil {
		out.Platform = &platformJSON{OS: d.Platform.OS, Architecture: d.Platform.Architecture, Variant: d.Platform.Variant}
	}
	return out
}

func descPtr(d *descriptor.Descriptor) *descJSON {
	if d == nil {
		return nil
	}
	out := descOf(*d)
	return &out
}

func configDesc(d descriptor.Descriptor) *descJSON {
	if d.MediaType == "" && d.Digest == "" {
		return nil
	}
	return descPtr(&d)
}

func descs(ds []descriptor.Descriptor) []descJSON {
	out := make([]descJSON, len(ds))
	for i, d := range ds {
		out[i] = descOf(d)
	}
	return out
}

func isIndexType(mt string) bool { return mediatype.IsIndex(mt) }

func isImageConfig(mt string) bool { return mt == mtOCIConfig || mt == mtDockerConfig }

// classify decides what a manifest is. mediaType is the manifest's own (from the registry, or the body's);
// tag is the tag it was asked for by, or "". Precedence: cosign's tag scheme; then signature, attestation and
// SBOM media types (artifactType, config, layers), because cosign signatures carry an image config; then a
// subject (any other referrer); then index, image, or a non-image artifact.
func classify(mediaType string, m *manifestJSON, tag string) (Kind, Accessory, string) {
	subject := ""
	if m.Subject != nil {
		subject = m.Subject.Digest
	}
	if acc, subj, ok := TagAccessory(tag); ok {
		return KindAccessory, acc, subj
	}
	if acc, ok := contentAccessory(m); ok {
		return KindAccessory, acc, subject
	}
	if subject != "" {
		return KindAccessory, AccessoryReferrer, subject
	}
	switch {
	case isIndexType(mediaType):
		if m.ArtifactType != "" {
			return KindAccessory, AccessoryArtifact, ""
		}
		return KindIndex, "", ""
	case mediaType == mtDocker1Manifest || mediaType == mtDocker1Signed:
		return KindImage, "", ""
	case m.Config != nil && isImageConfig(m.Config.MediaType) && (m.ArtifactType == "" || isImageConfig(m.ArtifactType)):
		return KindImage, "", ""
	}
	return KindAccessory, AccessoryArtifact, ""
}

// accessoryRank breaks ties when a manifest carries several accessory media types: a signature over an
// attestation over an SBOM.
var accessoryRank = map[Accessory]int{"": 0, AccessorySBOM: 1, AccessoryAttestation: 2, AccessorySignature: 3}

// contentAccessory recognises signatures, attestations and SBOMs by their media types.
func contentAccessory(m *manifestJSON) (Accessory, bool) {
	types := make([]string, 0, 2+len(m.Layers))
	types = append(types, m.ArtifactType)
	if m.Config != nil {
		types = append(types, m.Config.MediaType)
	}
	for _, l := range m.Layers {
		types = append(types, l.MediaType)
	}
	var found Accessory
	for _, t := range types {
		var acc Accessory
		switch {
		case t == "":
			continue
		case t == mtCosignSimpleSign, strings.HasPrefix(t, mtNotarySignature):
			acc = AccessorySignature
		case strings.HasPrefix(t, mtSigstoreBundle):
			acc = AccessoryAttestation
			if p, ok := m.Annotations[annotSigstorePred]; !ok || p == sigstoreSignPred {
				acc = AccessorySignature
			}
		case t == mtDSSE, t == mtInToto:
			acc = AccessoryAttestation
		case sbomTypes[t]:
			acc = AccessorySBOM
		default:
			continue
		}
		if accessoryRank[acc] > accessoryRank[found] {
			found = acc
		}
	}
	return found, found != ""
}

// skipChild reports whether an index entry is not a platform: buildx's attestation manifests (annotated, and
// with platform unknown/unknown) and entries that are indexes themselves.
func skipChild(d descJSON) bool {
	if d.Annotations[annotDockerRefType] == dockerAttestManifst {
		return true
	}
	if d.Platform != nil && d.Platform.OS == "unknown" && d.Platform.Architecture == "unknown" {
		return true
	}
	return isIndexType(d.MediaType)
}

// commonLabels returns the labels every platform has with the same value.
func commonLabels(ps []Platform) map[string]string {
	if len(ps) == 0 {
		return nil
	}
	out := maps.Clone(ps[0].Labels)
	for _, p := range ps[1:] {
		for k, v := range out {
			if pv, ok := p.Labels[k]; !ok || pv != v {
				delete(out, k)
			}
		}
	}
	return out
}
