package provenance

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	slsa "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"golang.org/x/mod/sumdb/dirhash"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/imageref"
)

// What the statement says it is.
const (
	// PredicateType is SLSA provenance v1's: `cosign verify-attestation --type slsaprovenance1` looks for it.
	PredicateType = "https://slsa.dev/provenance/v1"
	// BuildType names the meaning of externalParameters and internalParameters below (docs/provenance.md).
	BuildType = "https://github.com/harborflow/harborflow/blob/main/docs/provenance.md#rebuild-v1"
	// BuilderID is the builder: harborflow's rebuilder stage; its version is under runDetails.builder.version.
	BuilderID = "https://github.com/harborflow/harborflow/services/rebuilder"
	// ContextAlgorithm is how the context's digest is made: golang.org/x/mod/sumdb/dirhash's Hash1, the
	// SHA-256 of the `sha256sum`-style lines ("<hex>  <path>\n") of every file, sorted by path.
	ContextAlgorithm = "dirhash-h1"
)

// statementV01 is the in-toto statement type `cosign attest` writes; Parse reads it as v1, its fields being
// the same.
const statementV01 = "https://in-toto.io/Statement/v0.1"

// Names of the resolved dependencies.
const (
	depBase    = "base"
	depContext = "context"
	depSource  = "source"
)

// ErrInvalid: a statement is not harborflow's SLSA provenance, or a Build cannot make one.
var ErrInvalid = errors.New("invalid provenance")

// Build is what a provenance statement says of one rebuild.
type Build struct {
	// Image is the repository built into (registry/repository), Digest the image or index digest: the subject.
	Image, Digest string
	// Recipe, Builder (overlay, dockerfile or rebase) and Tag are the recipe's name, its builder kind and the
	// tag given to the image.
	Recipe, Builder, Tag string
	// Base is the base reference the recipe follows (registry.wso2.com/wso2am:4.2.0); BaseImage the base built
	// on, registry/repository@digest; BasePlatforms that base's platform manifests.
	Base, BaseImage string
	BasePlatforms   []Platform
	// ContextDigest is sha256:<hex> of the context's files (ContextAlgorithm), "" without a context.
	ContextDigest string
	// Dockerfile is the Dockerfile within the context (dockerfile builder).
	Dockerfile string
	// Source is the derived image the rebase builder moved onto the base, registry/repository@digest.
	Source string
	// EventID and CorrelationID are the triggering event's ("manual" for harborflow rebuild).
	EventID, CorrelationID string
	// Version is harborflow's.
	Version string
	// Started and Finished bound the build and its push.
	Started, Finished time.Time
}

// Platform is one platform's manifest of an index.
type Platform struct {
	Platform string // os/arch[/variant]
	Digest   string
}

// Statement is the in-toto statement of b, as JSON, validated against in-toto's and SLSA's rules.
func Statement(b Build) ([]byte, error) {
	subject, err := descriptor(b.Image, b.Digest)
	if err != nil {
		return nil, fmt.Errorf("%w: the image: %v", ErrInvalid, err)
	}
	base, err := imageref.Parse(b.BaseImage)
	if err != nil || base.Digest == "" {
		return nil, fmt.Errorf("%w: base %q: want registry/repository@digest", ErrInvalid, b.BaseImage)
	}
	deps := []*intoto.ResourceDescriptor{}
	d, err := dependency(depBase, base.Name(), base.Digest, map[string]any{"reference": b.Base})
	if err != nil {
		return nil, err
	}
	deps = append(deps, d)
	for _, p := range b.BasePlatforms {
		d, err := dependency(depBase+" "+p.Platform, base.Name(), p.Digest, map[string]any{"platform": p.Platform})
		if err != nil {
			return nil, err
		}
		deps = append(deps, d)
	}
	if b.ContextDigest != "" {
		d, err := descriptor("", b.ContextDigest)
		if err != nil {
			return nil, fmt.Errorf("%w: the context digest: %v", ErrInvalid, err)
		}
		d.Name, d.Annotations = depContext, mustStruct(map[string]any{"algorithm": ContextAlgorithm})
		deps = append(deps, d)
	}
	if b.Source != "" {
		src, err := imageref.Parse(b.Source)
		if err != nil || src.Digest == "" {
			return nil, fmt.Errorf("%w: source %q: want registry/repository@digest", ErrInvalid, b.Source)
		}
		d, err := dependency(depSource, src.Name(), src.Digest, nil)
		if err != nil {
			return nil, err
		}
		deps = append(deps, d)
	}
	external := map[string]any{"recipe": b.Recipe, "builder": b.Builder, "base": b.Base, "target": b.Image, "tag": b.Tag}
	if b.Dockerfile != "" {
		external["dockerfile"] = b.Dockerfile
	}
	ext, err := structpb.NewStruct(external)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	internal, err := structpb.NewStruct(map[string]any{"eventId": b.EventID, "correlationId": b.CorrelationID})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	pred := &slsa.Provenance{
		BuildDefinition: &slsa.BuildDefinition{BuildType: BuildType, ExternalParameters: ext, InternalParameters: internal,
			ResolvedDependencies: deps},
		RunDetails: &slsa.RunDetails{
			Builder:  &slsa.Builder{Id: BuilderID, Version: map[string]string{"harborflow": b.Version}},
			Metadata: &slsa.BuildMetadata{InvocationId: b.EventID, StartedOn: timestamp(b.Started), FinishedOn: timestamp(b.Finished)},
		},
	}
	if err := pred.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	predJSON, err := protojson.Marshal(pred)
	if err != nil {
		return nil, fmt.Errorf("encoding the provenance: %w", err)
	}
	predStruct := &structpb.Struct{}
	if err := protojson.Unmarshal(predJSON, predStruct); err != nil {
		return nil, fmt.Errorf("encoding the provenance: %w", err)
	}
	st := &intoto.Statement{Type: intoto.StatementTypeUri, Subject: []*intoto.ResourceDescriptor{subject},
		PredicateType: PredicateType, Predicate: predStruct}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	out, err := protojson.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encoding the statement: %w", err)
	}
	// protojson varies its spacing on purpose; compacted, the same build gives the same bytes.
	var buf bytes.Buffer
	if err := json.Compact(&buf, out); err != nil {
		return nil, fmt.Errorf("encoding the statement: %w", err)
	}
	return buf.Bytes(), nil
}

// Parse reads a statement Statement wrote back (or `cosign attest` wrote with such a predicate). It checks the statement's type, predicate type and build type;
// whoever hands it the statement has verified its signature.
func Parse(statement []byte) (Build, error) {
	st := &intoto.Statement{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(statement, st); err != nil {
		return Build{}, fmt.Errorf("%w: not an in-toto statement: %v", ErrInvalid, err)
	}
	if st.GetType() == statementV01 {
		// What cosign attest writes (in-toto-golang): the same fields under the older type.
		st.Type = intoto.StatementTypeUri
	}
	if err := st.Validate(); err != nil {
		return Build{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if st.GetPredicateType() != PredicateType {
		return Build{}, fmt.Errorf("%w: predicate type %s, want %s", ErrInvalid, st.GetPredicateType(), PredicateType)
	}
	predJSON, err := protojson.Marshal(st.GetPredicate())
	if err != nil {
		return Build{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	pred := &slsa.Provenance{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(predJSON, pred); err != nil {
		return Build{}, fmt.Errorf("%w: not a SLSA provenance v1 predicate: %v", ErrInvalid, err)
	}
	def := pred.GetBuildDefinition()
	if def.GetBuildType() != BuildType {
		return Build{}, fmt.Errorf("%w: build type %q is not harborflow's rebuild", ErrInvalid, def.GetBuildType())
	}
	sub := st.GetSubject()[0]
	ext := def.GetExternalParameters().GetFields()
	internal := def.GetInternalParameters().GetFields()
	meta := pred.GetRunDetails().GetMetadata()
	b := Build{
		Image: sub.GetName(), Digest: digestOf(sub),
		Recipe: ext["recipe"].GetStringValue(), Builder: ext["builder"].GetStringValue(), Tag: ext["tag"].GetStringValue(),
		Base: ext["base"].GetStringValue(), Dockerfile: ext["dockerfile"].GetStringValue(),
		EventID: internal["eventId"].GetStringValue(), CorrelationID: internal["correlationId"].GetStringValue(),
		Version:  pred.GetRunDetails().GetBuilder().GetVersion()["harborflow"],
		Started:  timeOf(meta.GetStartedOn()),
		Finished: timeOf(meta.GetFinishedOn()),
	}
	for _, d := range def.GetResolvedDependencies() {
		ref := strings.TrimPrefix(d.GetUri(), "oci://")
		switch name := d.GetName(); {
		case name == depBase:
			b.BaseImage = ref
		case strings.HasPrefix(name, depBase+" "):
			b.BasePlatforms = append(b.BasePlatforms, Platform{Platform: strings.TrimPrefix(name, depBase+" "), Digest: digestOf(d)})
		case name == depContext:
			b.ContextDigest = digestOf(d)
		case name == depSource:
			b.Source = ref
		}
	}
	if b.BaseImage == "" {
		return Build{}, fmt.Errorf("%w: no %q dependency", ErrInvalid, depBase)
	}
	return b, nil
}

// ContextDigest is the digest of the files under dir (ContextAlgorithm), sha256:<hex>: the same files under
// the same paths give the same digest, whatever their times and owners.
func ContextDigest(dir string) (string, error) {
	h1, err := dirhash.HashDir(dir, "", dirhash.Hash1)
	if err != nil {
		return "", fmt.Errorf("hashing the context %s: %w", dir, err)
	}
	sum, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h1, "h1:"))
	if err != nil {
		return "", fmt.Errorf("hashing the context %s: %w", dir, err)
	}
	return "sha256:" + hex.EncodeToString(sum), nil
}

// descriptor is a resource named name with digest alg:<hex>.
func descriptor(name, digest string) (*intoto.ResourceDescriptor, error) {
	alg, hexPart, ok := strings.Cut(digest, ":")
	if !ok || alg == "" || hexPart == "" {
		return nil, fmt.Errorf("digest %q: want <algorithm>:<hex>", digest)
	}
	d := &intoto.ResourceDescriptor{Name: name, Digest: map[string]string{alg: hexPart}}
	return d, d.Validate()
}

// dependency is an image dependency: name, repository@digest as an oci:// URI, and annotations.
func dependency(name, repository, digest string, annotations map[string]any) (*intoto.ResourceDescriptor, error) {
	d, err := descriptor("", digest)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
	}
	d.Name, d.Uri = name, "oci://"+repository+"@"+digest
	if annotations != nil {
		d.Annotations = mustStruct(annotations)
	}
	return d, nil
}

// digestOf is d's digest as alg:<hex>, sha256 first.
func digestOf(d *intoto.ResourceDescriptor) string {
	if h, ok := d.GetDigest()["sha256"]; ok {
		return "sha256:" + h
	}
	for alg, h := range d.GetDigest() {
		return alg + ":" + h
	}
	return ""
}

// mustStruct converts string-valued annotations, which cannot fail.
func mustStruct(m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	if err != nil {
		panic(err)
	}
	return s
}

// timeOf is ts as a time, zero when the statement has none (AsTime would say 1970).
func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t.UTC())
}
